-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- transaction_details: homed with its transaction. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE transaction_details SET LOCALITY REGIONAL BY ROW AS region;
