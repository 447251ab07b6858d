package server

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for the parsers of client input (reference/security.md §5.5). Their seed corpus
// runs in the normal test run; `go test -fuzz=FuzzParsePhone ./server` explores further.

func FuzzParsePhone(f *testing.F) {
	for _, s := range []string{"+971501234567", "+971 50 123 4567", "+٩٧١٥٠١٢٣٤٥٦٧", "00971501234567", "0501234567",
		"971501234567", "+9715012345678", "+971-50-123-4567 ext. 9", "+12015550123", "+97142345678", "+447400123456",
		"", "+", "++971501234567", "+0", "\x00+971501234567", "+971５０１２３４５６７", strings.Repeat("9", 50)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		e164, country, err := parsePhone(in)
		if err != nil {
			return
		}
		if !e164Pattern.MatchString(e164) || len(country) != 2 {
			t.Fatalf("parsePhone(%q) = %q, %q", in, e164, country)
		}
		// Canonical: the output parses to itself, so one person has one blind index.
		again, country2, err := parsePhone(e164)
		if err != nil || again != e164 || country2 != country {
			t.Fatalf("parsePhone(%q) = %q but parsePhone(%q) = %q, %v", in, e164, e164, again, err)
		}
	})
}

func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{"a@example.com", " A.B@Example.COM ", "Name <a@b.co>", "a@b", "a@@b.co", "üser@example.com",
		"a@bücher.de", "a@xn--bcher-kva.de", `"quoted"@example.com`, "a@b.co.", "", "@", strings.Repeat("a", 250) + "@b.co"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := normalizeEmail(in)
		if err != nil {
			return
		}
		if out != strings.ToLower(out) || strings.ContainsAny(out, " \t\r\n<>") || len(out) > 254 || strings.Count(out, "@") != 1 {
			t.Fatalf("normalizeEmail(%q) = %q", in, out)
		}
		again, err := normalizeEmail(out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q → %q → %q, %v", in, out, again, err)
		}
	})
}

func FuzzCheckNewPIN(f *testing.F) {
	for _, s := range []string{"1357", "1234", "0000", "987654", "121212", "12345", "7890", "12a4", "١٢٣٤", "", "1234567", "80246"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pin string) {
		err := checkNewPIN(pin)
		if err != nil {
			return
		}
		if len(pin) < 4 || len(pin) > 6 || strings.Trim(pin, "0123456789") != "" {
			t.Fatalf("accepted %q", pin)
		}
		if strings.Count(pin, pin[:1]) == len(pin) {
			t.Fatalf("accepted all-same %q", pin)
		}
		if strings.Contains("01234567890", pin) || strings.Contains("09876543210", pin) {
			t.Fatalf("accepted a sequence %q", pin)
		}
	})
}

func FuzzMask(f *testing.F) {
	for _, s := range []string{"+971501234567", "ab@example.com", "a@b", "", "é@x", "\xff@\xfe", "+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// A masked phone shows only its last four characters: the rest are stars.
		m := maskPhone(s)
		if len(s) > 4 && (len(m) != len(s) || strings.Trim(m[:len(m)-4], "*") != "" || m[len(m)-4:] != s[len(s)-4:]) {
			t.Fatalf("maskPhone(%q) = %q", s, m)
		}
		if len(s) <= 4 && m != "****" {
			t.Fatalf("maskPhone(%q) = %q", s, m)
		}
		// A masked email shows at most two characters of the local part, then the domain.
		e := maskEmail(s)
		local, domain, ok := strings.Cut(s, "@")
		if !ok {
			if e != "***" {
				t.Fatalf("maskEmail(%q) = %q", s, e)
			}
			return
		}
		shown, rest, _ := strings.Cut(e, "***@")
		if rest != domain || utf8.RuneCountInString(shown) > 2 || !strings.HasPrefix(local, shown) {
			t.Fatalf("maskEmail(%q) = %q", s, e)
		}
	})
}

// FuzzDecodeAuthBodies runs the strict decoder and the validator over the auth and user request
// types (optionalString has its own UnmarshalJSON): never a panic, never a 5xx.
func FuzzDecodeAuthBodies(f *testing.F) {
	for _, s := range []string{`{"daily_limit":null}`, `{"daily_limit":"5"}`, `{"daily_limit":5}`, `{"notifications":{"push_enabled":true}}`,
		`{"notifications":null}`, `{"first_name":"A","status":"x"}`, `{"verification_token":"vt1.x.y","pin":"1357","first_name":"a","last_name":"b","device_id":"d"}`,
		`{"date_of_birth":"1990-02-30"}`, `{"gender":""}`, `{"email":null}`, `[]`, `{"daily_limit":"1","daily_limit":null}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, dst := range []any{&patchSettingsRequest{}, &patchUserRequest{}, &signUpRequest{}, &loginRequest{}, &otpVerifyRequest{}} {
			err := decodeStrict(strings.NewReader(body), dst)
			if err == nil {
				err = check(dst)
			}
			if err == nil {
				continue
			}
			e := toError(err)
			if e.Status < 400 || e.Status >= 500 {
				t.Fatalf("%T %q: %v", dst, body, err)
			}
		}
	})
}
