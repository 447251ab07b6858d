-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- user_auth: the user's PIN hash and lock state. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE user_auth SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
