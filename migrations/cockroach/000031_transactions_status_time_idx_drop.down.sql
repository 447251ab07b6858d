-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- transactions_status_time_idx leads with a timestamp; drop it to recreate it hash-sharded (reference/cockroachdb.md §5).
CREATE INDEX transactions_status_time_idx ON transactions (status, created_at);
