-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- rate_limits: row-level TTL, the plan's retention. Reads still filter expired rows (reference/cockroachdb.md §4).
ALTER TABLE rate_limits RESET (ttl);
