-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- contacts_with_accounts: the owner's contacts. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE contacts_with_accounts SET LOCALITY REGIONAL BY ROW AS region;
