-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- users: the user. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE users SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
