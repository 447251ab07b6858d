-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- user_sessions: the user's devices. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE user_sessions SET LOCALITY REGIONAL BY ROW AS region;
