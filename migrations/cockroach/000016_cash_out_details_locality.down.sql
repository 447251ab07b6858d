-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- cash_out_details: homed with its transaction. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE cash_out_details SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
