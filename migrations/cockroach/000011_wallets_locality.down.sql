-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- wallets: the user's wallet. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE wallets SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
