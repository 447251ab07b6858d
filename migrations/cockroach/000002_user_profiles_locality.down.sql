-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- user_profiles: the user's PII. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE user_profiles SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
