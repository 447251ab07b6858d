-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- contact_sync_status: the owner's sync state. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE contact_sync_status SET LOCALITY REGIONAL BY ROW AS region;
