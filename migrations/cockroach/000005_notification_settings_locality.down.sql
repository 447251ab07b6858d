-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- notification_settings: the user's settings. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE notification_settings SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
