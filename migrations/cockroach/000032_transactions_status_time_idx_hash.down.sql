-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- transactions_status_time_idx, hash-sharded so time-ordered inserts spread over ranges (reference/cockroachdb.md §5).
DROP INDEX transactions@transactions_status_time_idx;
