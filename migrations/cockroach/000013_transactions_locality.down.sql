-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- transactions: homed with the initiator (sender). Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE transactions SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
