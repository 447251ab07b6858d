-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- activity_logs: the user's audit trail. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE activity_logs SET LOCALITY REGIONAL BY ROW AS region;
