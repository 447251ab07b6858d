-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- payment_requests: homed with the requestor. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE payment_requests SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
