-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- rate_limits: throttle counters of the region that counts them. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE rate_limits SET LOCALITY REGIONAL BY ROW AS region;
