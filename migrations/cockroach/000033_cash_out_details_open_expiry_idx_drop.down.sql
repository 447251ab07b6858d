-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- cash_out_details_open_expiry_idx leads with a timestamp; drop it to recreate it hash-sharded (reference/cockroachdb.md §5).
CREATE INDEX cash_out_details_open_expiry_idx ON cash_out_details (expires_at) WHERE collected_at IS NULL AND cancelled_at IS NULL;
