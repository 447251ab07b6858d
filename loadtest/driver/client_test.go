package driver

import (
	"net/http"
	"testing"
	"time"
)

func TestParseTransaction(t *testing.T) {
	top, err := ParseTransaction([]byte(`{"id":"a","reference":"r1","amount":"1.00","fee":"0.05","status":"completed"}`))
	if err != nil || top.ID != "a" || top.Reference != "r1" || top.Fee.String() != "0.05" {
		t.Errorf("top level: %+v %v", top, err)
	}
	nested, err := ParseTransaction([]byte(`{"transaction":{"id":"b","reference":"r2","amount":"2","fee":"0"},"cash_out":{"method":"atm"}}`))
	if err != nil || nested.ID != "b" || nested.Reference != "r2" || !nested.Fee.IsZero() {
		t.Errorf("nested: %+v %v", nested, err)
	}
	for _, bad := range []string{`{"code":"insufficient_funds"}`, `not json`, `{"id":"c","fee":"x"}`} {
		if _, err := ParseTransaction([]byte(bad)); err == nil {
			t.Errorf("%s parsed", bad)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	h := http.Header{}
	h.Set("Retry-After", "1")
	if d := retryAfter(h, 0); d != time.Second {
		t.Errorf("Retry-After 1 → %v", d)
	}
	h.Set("Retry-After", "60")
	if d := retryAfter(h, 0); d != 2*time.Second {
		t.Errorf("a long Retry-After must be capped: %v", d)
	}
	if d := retryAfter(http.Header{}, 2); d != 300*time.Millisecond {
		t.Errorf("no Retry-After, third wait → %v", d)
	}
}
