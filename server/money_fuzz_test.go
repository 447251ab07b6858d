package server

import (
	"math/big"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/7awel/wallet/storage"
)

// Fuzz targets for the money endpoints' parsers of client input. Their seeds run in the normal
// test run; `go test -run='^$' -fuzz=FuzzParseAmount ./server` explores further.

var fuzzAsset = storage.Asset{Symbol: "TST", Decimals: 2, MinAmount: "0.05", MaxAmount: "180000"}

// referenceAmount is an independent reading of an amount with math/big, for a differential
// check: plain digits, optional fraction, no sign or exponent.
var plainDecimal = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

func referenceAmount(s string, decimals int) (*big.Rat, bool) {
	if !plainDecimal.MatchString(s) || len(s) > 21 {
		return nil, false
	}
	intPart, frac, _ := strings.Cut(s, ".")
	if len(intPart) > 1 && intPart[0] == '0' || len(intPart) > 12 || len(frac) > 8 {
		return nil, false
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, false
	}
	scaled := new(big.Rat).Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(decimals)), nil)))
	if !scaled.IsInt() {
		return nil, false
	}
	lo, _ := new(big.Rat).SetString(fuzzAsset.MinAmount)
	hi, _ := new(big.Rat).SetString(fuzzAsset.MaxAmount)
	if r.Cmp(lo) < 0 || r.Cmp(hi) > 0 {
		return nil, false
	}
	return r, true
}

func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"12.50", "0", "0.00", "0.05", "0.04", "-1", "+1", "1e3", "1E-2", "NaN", "Infinity", "-0",
		".5", "5.", "00012.30", "180000", "180000.01", "1.001", "1.000", " 1", "1 ", "1_000", "0x10", "١٢", "", "999999999999.99999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseAmount("amount", s, fuzzAsset)
		want, ok := referenceAmount(s, fuzzAsset.Decimals)
		if (err == nil) != ok {
			t.Fatalf("parseAmount(%q) err=%v, reference accepts=%v", s, err, ok)
		}
		if err != nil {
			e, isErr := err.(*Error)
			if !isErr || e.Status != 422 || e.Code != "invalid_amount" {
				t.Fatalf("parseAmount(%q): %v, want 422 invalid_amount", s, err)
			}
			return
		}
		if d.Sign() <= 0 || d.Rat().Cmp(want) != 0 {
			t.Fatalf("parseAmount(%q) = %s, want %s", s, d, want.FloatString(8))
		}
		// The canonical form re-parses to the same amount.
		back, err := parseAmount("amount", storage.FormatAmount(d, fuzzAsset.Decimals), fuzzAsset)
		if err != nil || !back.Equal(d) {
			t.Fatalf("round trip of %q: %s, %v", s, back, err)
		}
	})
}

func FuzzHistoryQuery(f *testing.F) {
	valid := storage.Cursor{}.Encode()
	for _, s := range []string{"", "type=transfer&status=completed", "limit=100", "limit=0", "limit=-1", "limit=1e2",
		"direction=incoming&asset=USD", "from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00.123456Z", "from=0000-01-01T00:00:00Z",
		"cursor=" + valid, "cursor=AAAA", "cursor=%ff", "type=transfer&type=cash_in", "asset=usd", "status=" + strings.Repeat("x", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		hf, err := parseHistoryQuery(q)
		if err != nil {
			e, isErr := err.(*Error)
			if !isErr || (e.Status != 422 && e.Status != 400) {
				t.Fatalf("%q: %v", raw, err)
			}
			return
		}
		if hf.Limit < 0 || hf.Limit > 100 {
			t.Fatalf("%q: limit %d", raw, hf.Limit)
		}
		if hf.Type != "" && !historyTypes[hf.Type] || hf.Status != "" && !historyStatuses[hf.Status] ||
			hf.Direction != "" && !historyDirection[hf.Direction] || hf.Asset != "" && !symbolPattern.MatchString(hf.Asset) {
			t.Fatalf("%q: accepted %+v", raw, hf)
		}
		if hf.Cursor != nil {
			again, err := storage.DecodeCursor(hf.Cursor.Encode())
			if err != nil || !again.CreatedAt.Equal(hf.Cursor.CreatedAt) || again.ID != hf.Cursor.ID {
				t.Fatalf("%q: cursor does not round-trip", raw)
			}
		}
	})
}
