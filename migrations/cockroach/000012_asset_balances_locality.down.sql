-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- asset_balances: the user's balances. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE asset_balances SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
