-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- otp_codes: row-level TTL, the plan's retention. Reads still filter expired rows (reference/cockroachdb.md §4).
ALTER TABLE otp_codes SET (ttl_expiration_expression = $$(created_at + INTERVAL '24 hours')$$, ttl_job_cron = '0 */4 * * *');
