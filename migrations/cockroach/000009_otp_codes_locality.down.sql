-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.
-- otp_codes: challenges for a phone, homed with the phone's country. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).
ALTER TABLE otp_codes SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;
