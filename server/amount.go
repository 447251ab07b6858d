package server

import (
	"context"
	"fmt"
	"net/http"
	"regexp"

	"github.com/shopspring/decimal"

	"github.com/7awel/wallet/storage"
)

// amountPattern is the only shape of amount accepted, matched before any decimal parser sees
// the string (reference/security.md §5.3): digits, an optional point and fraction, no sign,
// exponent, spaces, leading zeros, NaN or infinities; at most 12 integer and 8 fractional
// digits (NUMERIC(20,8)).
var amountPattern = regexp.MustCompile(`^(0|[1-9][0-9]{0,11})(\.[0-9]{1,8})?$`)

// errInvalidAmount is the one answer to an unusable amount: 422 invalid_amount naming the field.
func errInvalidAmount(field, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{Status: http.StatusUnprocessableEntity, Code: "invalid_amount",
		Detail: "The amount is not valid for this asset: " + msg + ".", Fields: map[string]string{field: msg}}
}

// parseAmount reads a client's decimal string for asset a, exactly: never rounded. It refuses
// zero, more decimals than the asset has, and amounts outside the asset's limits.
func parseAmount(field, raw string, a storage.Asset) (decimal.Decimal, error) {
	if !amountPattern.MatchString(raw) {
		return decimal.Decimal{}, errInvalidAmount(field, "a positive decimal string such as 12.50")
	}
	d, err := decimal.NewFromString(raw)
	if err != nil { // unreachable after the pattern; kept so a parser change cannot slip through
		return decimal.Decimal{}, errInvalidAmount(field, "a positive decimal string such as 12.50")
	}
	if d.Sign() <= 0 {
		return decimal.Decimal{}, errInvalidAmount(field, "more than zero")
	}
	if -d.Exponent() > int32(a.Decimals) && !d.Equal(d.Truncate(int32(a.Decimals))) {
		return decimal.Decimal{}, errInvalidAmount(field, "at most %d decimals for %s", a.Decimals, a.Symbol)
	}
	lo, err1 := decimal.NewFromString(a.MinAmount)
	hi, err2 := decimal.NewFromString(a.MaxAmount)
	if err1 != nil || err2 != nil {
		return decimal.Decimal{}, fmt.Errorf("asset %s limits %q..%q", a.Symbol, a.MinAmount, a.MaxAmount)
	}
	if d.LessThan(lo) || d.GreaterThan(hi) {
		return decimal.Decimal{}, errInvalidAmount(field, "between %s and %s %s", lo, hi, a.Symbol)
	}
	return d, nil
}

// assetAmount resolves what every movement request names: an active asset and an amount
// within that asset's precision and range (422 asset_unavailable or invalid_amount otherwise).
func (m *moneyAPI) assetAmount(ctx context.Context, symbol, raw string) (storage.Asset, decimal.Decimal, error) {
	asset, err := m.assets.Get(ctx, symbol)
	if err != nil {
		return storage.Asset{}, decimal.Decimal{}, err
	}
	amount, err := parseAmount("amount", raw, asset)
	return asset, amount, err
}
