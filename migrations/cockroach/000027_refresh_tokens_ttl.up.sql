-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- refresh_tokens: row-level TTL, the plan's retention. Reads still filter expired rows (reference/cockroachdb.md §4).
ALTER TABLE refresh_tokens SET (ttl_expiration_expression = $$(expires_at)$$, ttl_job_cron = '0 */4 * * *');
