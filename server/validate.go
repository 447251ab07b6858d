package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"reflect"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"
	"github.com/nyaruka/phonenumbers"
	"golang.org/x/net/idna"
)

// Input checks of client data. Request bodies decode strictly into one request type per
// endpoint (never into storage types: mass assignment, reference/security.md §1.7), then
// validator/v10 checks their shape; phones, emails and PINs have parsers of their own here,
// fuzzed in validate_fuzz_test.go.

// validate is the process's validator: safe for concurrent use, caches struct metadata. Field
// names in messages are the JSON names the client sent.
var validate = newValidator()

func newValidator() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			return ""
		}
		return name
	})
	_ = v.RegisterValidation("isodate", func(fl validator.FieldLevel) bool {
		t, err := time.Parse("2006-01-02", fl.Field().String())
		return err == nil && t.Year() >= 1900 && t.Before(time.Now())
	})
	_ = v.RegisterValidation("decimal", func(fl validator.FieldLevel) bool {
		return decimalPattern.MatchString(fl.Field().String())
	})
	return v
}

// decimalPattern: a non-negative decimal string, at most 12 integer and 8 fractional digits
// (NUMERIC(20,8)), no sign, exponent or leading zeros.
var decimalPattern = regexp.MustCompile(`^(0|[1-9][0-9]{0,11})(\.[0-9]{1,8})?$`)

// decodeValid is the first step of every handler with a body: decodeJSON, then check.
func decodeValid(r *http.Request, req any) error {
	if err := decodeJSON(r, req); err != nil {
		return err
	}
	return check(req)
}

// check validates a decoded request; a failure is 422 validation_failed with a message per field.
func check(req any) error {
	err := validate.Struct(req)
	if err == nil {
		return nil
	}
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		return err
	}
	fields := make(map[string]string, len(verrs))
	for _, fe := range verrs {
		name := fe.Namespace()
		if i := strings.Index(name, "."); i >= 0 {
			name = name[i+1:] // drop the struct name
		}
		fields[name] = validationMessage(fe)
	}
	return &Error{Status: http.StatusUnprocessableEntity, Code: "validation_failed",
		Detail: "Some fields are missing or invalid.", Fields: fields}
}

func validationMessage(fe validator.FieldError) string {
	switch fe.Tag() {
	case "required", "required_without":
		return "required"
	case "max":
		return "at most " + fe.Param() + " characters"
	case "min":
		return "at least " + fe.Param() + " characters"
	case "oneof":
		return "one of: " + fe.Param()
	case "isodate":
		return "a past date as YYYY-MM-DD"
	case "decimal":
		return "a decimal string such as 100.50"
	case "url", "http_url":
		return "an http(s) URL"
	case "iso3166_1_alpha2":
		return "an ISO 3166-1 alpha-2 country code, upper case"
	case "bcp47_language_tag":
		return "a language tag such as en or ar"
	}
	return "invalid (" + fe.Tag() + ")"
}

// errInvalidPhone is what every unusable phone number answers.
func errInvalidPhone(field string) *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: "invalid_phone",
		Detail: "The phone number is not a valid mobile number in international format.",
		Fields: map[string]string{field: "a mobile number such as +971501234567"}}
}

var e164Pattern = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// parsePhone normalises a client's phone number to E.164 and returns its country (ISO
// alpha-2). It accepts what people type (spaces, dashes, Arabic-Indic digits, a 00 international
// prefix) and refuses numbers that are invalid, not mobile (premium and shared-cost numbers are
// how SMS pumping pays, reference/security.md §5.4) or carry an extension. The one E.164 string
// is what the blind index, uniqueness and the SMS use.
func parsePhone(raw string) (e164, country string, err error) {
	s := strings.TrimSpace(raw)
	if s == "" || len(s) > 40 || !utf8.ValidString(s) {
		return "", "", errors.New("phone: empty, too long or not UTF-8")
	}
	num, perr := phonenumbers.Parse(s, "")
	if perr != nil && strings.HasPrefix(toASCIIDigits(s), "00") {
		// International prefix 00 instead of +.
		num, perr = phonenumbers.Parse("+"+strings.TrimPrefix(toASCIIDigits(s), "00"), "")
	}
	if perr != nil {
		return "", "", fmt.Errorf("phone: %w", perr)
	}
	if !phonenumbers.IsValidNumber(num) {
		return "", "", errors.New("phone: not a valid number")
	}
	switch phonenumbers.GetNumberType(num) {
	case phonenumbers.MOBILE, phonenumbers.FIXED_LINE_OR_MOBILE:
	default:
		return "", "", errors.New("phone: not a mobile number")
	}
	if num.GetExtension() != "" {
		return "", "", errors.New("phone: extensions are not accepted")
	}
	e164 = phonenumbers.Format(num, phonenumbers.E164)
	if !e164Pattern.MatchString(e164) {
		return "", "", errors.New("phone: not E.164")
	}
	return e164, phonenumbers.GetRegionCodeForNumber(num), nil
}

// toASCIIDigits maps Arabic-Indic and Eastern Arabic-Indic digits to ASCII (for the 00 check
// only; phonenumbers does the same itself).
func toASCIIDigits(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= '٠' && r <= '٩':
			return '0' + (r - '٠')
		case r >= '۰' && r <= '۹':
			return '0' + (r - '۰')
		}
		return r
	}, s)
}

// normalizeEmail returns the canonical form of an email address for its blind index and
// storage: trimmed, lower-case, the domain in IDNA ASCII form. It refuses display names,
// comments, non-ASCII local parts and anything longer than 254 bytes. Lower-casing the local part
// is a deliberate simplification: no mainstream provider has case-sensitive mailboxes, and one
// person must not get two index entries.
func normalizeEmail(raw string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(raw))
	if s == "" || len(s) > 254 || !utf8.ValidString(s) {
		return "", errors.New("email: empty, too long or not UTF-8")
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return "", errors.New("email: not a plain address")
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return "", errors.New("email: not a plain address")
	}
	for _, r := range local {
		if r > 0x7e || r <= 0x20 {
			return "", errors.New("email: non-ASCII local part")
		}
	}
	ascii, err := idna.Lookup.ToASCII(domain)
	if err != nil || !strings.Contains(ascii, ".") || strings.HasSuffix(ascii, ".") {
		return "", errors.New("email: invalid domain")
	}
	out := local + "@" + strings.ToLower(ascii)
	if len(out) > 254 {
		return "", errors.New("email: too long")
	}
	return out, nil
}

// PIN rules (api.md: 4 to 6 digits; all-same and straight sequences are weak).
var pinPattern = regexp.MustCompile(`^[0-9]{4,6}$`)

// commonPINs are weak beyond the rules below: keypad patterns and famously over-used choices.
var commonPINs = map[string]bool{
	"1212": true, "1122": true, "2580": true, "0852": true, "1004": true, "2000": true, "1010": true,
	"6969": true, "1313": true, "4545": true, "112233": true, "121212": true, "123123": true,
	"147258": true, "159753": true, "696969": true, "2468": true,
}

// errPINFormat and errWeakPIN are the two ways a new PIN is refused.
var (
	errPINFormat = errors.New("a PIN is 4 to 6 digits")
	errWeakPIN   = errors.New("the PIN is too easy to guess")
)

// checkNewPIN validates a PIN being set: its format, then that it is not weak (all one digit,
// a straight run up or down, a repeated pair or triple, or a common choice).
func checkNewPIN(pin string) error {
	if !pinPattern.MatchString(pin) {
		return errPINFormat
	}
	if commonPINs[pin] {
		return errWeakPIN
	}
	same, up, down := true, true, true
	for i := 1; i < len(pin); i++ {
		d := int(pin[i]) - int(pin[i-1])
		same = same && d == 0
		up = up && (d == 1 || d == -9)
		down = down && (d == -1 || d == 9)
	}
	if same || up || down {
		return errWeakPIN
	}
	for _, n := range []int{2, 3} {
		if len(pin)%n == 0 && len(pin) > n && strings.Repeat(pin[:n], len(pin)/n) == pin {
			return errWeakPIN
		}
	}
	return nil
}

// pinError turns a checkNewPIN failure into the API's answer for field.
func pinError(field string, err error) *Error {
	if errors.Is(err, errWeakPIN) {
		return &Error{Status: http.StatusUnprocessableEntity, Code: "weak_pin",
			Detail: "Choose a PIN that is not a repeated digit, a sequence or a common choice.",
			Fields: map[string]string{field: err.Error()}}
	}
	return &Error{Status: http.StatusUnprocessableEntity, Code: "validation_failed",
		Detail: "Some fields are missing or invalid.", Fields: map[string]string{field: err.Error()}}
}

// validPINFormat reports whether a presented PIN (login, money calls) is shaped like one; a
// malformed one is refused without spending an attempt.
func validPINFormat(pin string) bool { return pinPattern.MatchString(pin) }

// maskPhone shows the last four digits of a phone (design.md: what others and logs may see).
func maskPhone(e164 string) string {
	if len(e164) <= 4 {
		return "****"
	}
	return strings.Repeat("*", len(e164)-4) + e164[len(e164)-4:]
}

// maskEmail shows the first two characters of the local part and the domain.
func maskEmail(email string) string {
	local, domain, ok := strings.Cut(email, "@")
	if !ok {
		return "***"
	}
	n := 0
	for i := 0; i < 2 && n < len(local); i++ {
		_, size := utf8.DecodeRuneInString(local[n:])
		n += size
	}
	return local[:n] + "***@" + domain
}
