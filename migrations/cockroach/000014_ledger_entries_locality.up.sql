-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- ledger_entries: homed with each party. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE ledger_entries SET LOCALITY REGIONAL BY ROW AS region;
