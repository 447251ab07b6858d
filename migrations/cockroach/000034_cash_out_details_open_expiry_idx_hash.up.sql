-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- cash_out_details_open_expiry_idx, hash-sharded so time-ordered inserts spread over ranges (reference/cockroachdb.md §5). A partial hash-sharded index is [inference]: check EXPLAIN on the target version.
CREATE INDEX cash_out_details_open_expiry_idx ON cash_out_details (expires_at) USING HASH WHERE collected_at IS NULL AND cancelled_at IS NULL;
