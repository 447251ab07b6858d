-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- activity_logs: row-level TTL, the plan's retention. Reads still filter expired rows (reference/cockroachdb.md §4).
ALTER TABLE activity_logs SET (ttl_expiration_expression = $$(created_at + INTERVAL '2 years')$$, ttl_job_cron = '@daily');
