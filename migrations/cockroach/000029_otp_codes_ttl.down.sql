-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- otp_codes: row-level TTL, the plan's retention. Reads still filter expired rows (reference/cockroachdb.md §4).
ALTER TABLE otp_codes RESET (ttl);
