-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- phone_directory: keyed hash → user and home region, no PII; lets any region find a recipient. Read locally in every region, written rarely (reference/cockroachdb.md §1.2, §6).
ALTER TABLE phone_directory SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
