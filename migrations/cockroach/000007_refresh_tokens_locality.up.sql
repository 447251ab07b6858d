-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- refresh_tokens: the user's session lineage. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE refresh_tokens SET LOCALITY REGIONAL BY ROW AS region;
