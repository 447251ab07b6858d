-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- promotion_views: the user's views and clicks. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE promotion_views SET LOCALITY REGIONAL BY ROW AS region;
