package server

import (
	"errors"
	"strings"
	"testing"
)

// FuzzDecodeStrict: any body either decodes or yields an *Error with a 4xx status and a stable
// code; never a panic, never a 5xx.
func FuzzDecodeStrict(f *testing.F) {
	for _, seed := range []string{`{}`, `{"phone":"+971501234567","purpose":"register"}`, `{"a":`, `[]`, `null`,
		`{"phone":1}`, `{"phone":"x","phone":"y"}`, "\xff\xfe", `{"amount":"1e9"}`, `{} {}`, ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var dst struct {
			Phone   string `json:"phone"`
			Purpose string `json:"purpose"`
			Amount  string `json:"amount"`
		}
		err := decodeStrict(strings.NewReader(body), &dst)
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) || e.Status < 400 || e.Status >= 500 || e.Code == "" {
			t.Fatalf("decodeStrict(%q) = %v", body, err)
		}
	})
}
