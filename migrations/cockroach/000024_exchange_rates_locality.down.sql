-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- exchange_rates: reference data. Read locally in every region, written rarely (reference/cockroachdb.md §1.2, §6).
ALTER TABLE exchange_rates SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
