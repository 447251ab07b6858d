-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- email_directory: keyed hash → user and home region, no PII; global email uniqueness. Read locally in every region, written rarely (reference/cockroachdb.md §1.2, §6).
ALTER TABLE email_directory SET LOCALITY GLOBAL;
