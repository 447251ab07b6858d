package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// The log PII audit. Every testEnv's logger tees into suiteLogs, and every PII value the suite
// creates (phones, emails, names, PINs, OTP codes, pickup codes, verification, access and
// refresh tokens) is recorded in suitePII: by randomPhone, and by testEnv.do from every request
// body, Authorization header and answer. After a full run TestMain fails if any recorded value
// appears in any log line (auditPIILogs).
var (
	suiteLogs = &logSink{}
	suitePII  = newPIIScanner()
)

// piiKeys are the JSON fields of requests and answers that carry PII or secrets, by kind.
var piiKeys = map[string]string{
	"phone": "phone", "recipient_phone": "phone",
	"email":      "email",
	"first_name": "name", "last_name": "name",
	"pin": "pin", "new_pin": "pin", "current_pin": "pin",
	"code": "otp code", "dev_code": "otp code", "pickup_code": "pickup code",
	"verification_token": "verification token", "access_token": "access token", "refresh_token": "refresh token",
}

// recordPIIJSON records the PII fields of a JSON document (any depth). Bodies that are not
// JSON (tests send broken ones on purpose) record nothing.
func recordPIIJSON(raw []byte) {
	var doc any
	if json.Unmarshal(raw, &doc) != nil {
		return
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok {
					if kind, ok := piiKeys[k]; ok {
						suitePII.add(kind, s)
					}
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
}

// recordPIIHeader records the bearer token of an Authorization header.
func recordPIIHeader(name, value string) {
	if strings.EqualFold(name, "Authorization") {
		if _, tok, ok := strings.Cut(value, " "); ok {
			suitePII.add("access token", strings.TrimSpace(tok))
		}
	}
}

// piiScanner is a multi-pattern search over log lines. Values are bucketed by their first four
// (lower-cased) bytes, so a scan costs one map lookup per byte of log, not one pass per value:
// the suite records thousands of values.
type piiScanner struct {
	mu      sync.Mutex
	kinds   map[string]string   // value (lower case) → kind
	buckets map[string][]string // first 4 bytes → values
}

func newPIIScanner() *piiScanner {
	return &piiScanner{kinds: map[string]string{}, buckets: map[string][]string{}}
}

// minPIILen: shorter values ("A", "B" in validation tests) match ordinary text by chance, and a
// real PII value is never that short.
const minPIILen = 4

// minTokenLen: the least length of a recorded token.
const minTokenLen = 20

func (p *piiScanner) add(kind, value string) {
	value = strings.TrimSpace(value)
	if kind == "phone" {
		// A phone leaks in any of its spellings: E.164, its digits without '+', the national
		// significant number and the national form with a trunk 0. A value that is no phone
		// (a validation test's garbage) is not one of those.
		num, err := phonenumbers.Parse(value, "")
		if err != nil {
			if e164, _, perr := parsePhone(value); perr == nil {
				num, err = phonenumbers.Parse(e164, "")
			}
		}
		if err != nil || !phonenumbers.IsValidNumber(num) {
			return
		}
		e164 := phonenumbers.Format(num, phonenumbers.E164)
		national := phonenumbers.GetNationalSignificantNumber(num)
		for _, v := range []string{e164, strings.TrimPrefix(e164, "+"), national, "0" + national} {
			p.addValue(kind, v)
		}
		return
	}
	// A field of that name holding something else is not that secret: problem documents have a
	// "code" too (route_not_found), and validation tests send garbage PINs on purpose.
	switch {
	case kind == "email" && !strings.Contains(value, "@"),
		(kind == "otp code" || kind == "pin") && !isDigits(value),
		// Real tokens are 40 characters and more; tests also send "nope" and the like.
		strings.HasSuffix(kind, "token") && len(value) < minTokenLen,
		// The helpers' shared first name: a fixture, not a person (money tests read display
		// names "Test U."); each helper user's last name is unique and recorded.
		kind == "name" && value == helperFirstName:
		return
	}
	p.addValue(kind, value)
}

func (p *piiScanner) addValue(kind, value string) {
	v := strings.ToLower(value)
	if len(v) < minPIILen {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.kinds[v]; ok {
		return
	}
	p.kinds[v] = kind
	p.buckets[v[:minPIILen]] = append(p.buckets[v[:minPIILen]], v)
}

func (p *piiScanner) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.kinds)
}

// Digit-only values of up to shortDigits digits (PINs, OTP codes) are common numbers: they are
// looked for only inside JSON strings and never in a stack trace (goroutine ids, line numbers),
// as whole numbers. Longer digit values (phones) are looked for everywhere, also as whole
// numbers: not inside a longer number, a hex id or a decimal fraction (a duration's digits).
const shortDigits = 8

// maskedPhone reports whether text is a phone masked for display (maskPhone: stars, then the
// last four digits, which the design allows anyone to see). Its digits may equal a test's PIN or
// code by chance; that is not a leak.
func maskedPhone(text string) bool {
	stars := strings.TrimLeft(text, "*")
	return len(stars) == 4 && len(text) > 4 && isDigits(stars)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// wholeNumberAt reports whether the digits s[i:j] stand alone: no letter or digit on either
// side, and not the fraction of a decimal number.
func wholeNumberAt(s string, i, j int) bool {
	if i > 0 && isAlnum(s[i-1]) {
		return false
	}
	if i > 1 && s[i-1] == '.' && s[i-2] >= '0' && s[i-2] <= '9' {
		return false
	}
	return j >= len(s) || !isAlnum(s[j])
}

// wholeWordAt reports whether s[i:j] is a word of its own: no letter on either side. Names
// are matched that way ("Omar" in "Omar's", not in "Omarion"), and never in stack traces,
// where words are code identifiers (a test named TestX holds "test").
func wholeWordAt(s string, i, j int) bool {
	isLetter := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	return (i == 0 || !isLetter(s[i-1])) && (j >= len(s) || !isLetter(s[j]))
}

// find returns the kinds of the recorded values in text. inString says text is a JSON string
// outside a stack trace, where short digit values count too.
func (p *piiScanner) find(text string, inString bool, found map[string]bool) {
	low := strings.ToLower(text)
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 0; i+minPIILen <= len(low); i++ {
		for _, v := range p.buckets[low[i:i+minPIILen]] {
			if !strings.HasPrefix(low[i:], v) {
				continue
			}
			if isDigits(v) {
				if len(v) <= shortDigits && (!inString || maskedPhone(text)) {
					continue
				}
				if !wholeNumberAt(low, i, i+len(v)) {
					continue
				}
			}
			if p.kinds[v] == "name" && (!inString || !wholeWordAt(low, i, i+len(v))) {
				continue
			}
			found[p.kinds[v]] = true
		}
	}
}

// scan checks every JSON log line and returns one finding per line that holds PII: its number
// and the kinds found, never the value itself (the report must not leak either).
func (p *piiScanner) scan(logs string) []string {
	var findings []string
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		found := map[string]bool{}
		var fields map[string]any
		d := json.NewDecoder(strings.NewReader(line))
		d.UseNumber()
		if d.Decode(&fields) != nil {
			// Not a JSON line (nothing else should log here): search it as a whole.
			p.find(line, true, found)
		} else {
			for k, v := range fields {
				p.findValue(k, v, found)
			}
		}
		if len(found) > 0 {
			kinds := make([]string, 0, len(found))
			for k := range found {
				kinds = append(kinds, k)
			}
			sort.Strings(kinds)
			key := ""
			if fields != nil {
				key = fmt.Sprintf(" (msg %q)", fields["msg"])
			}
			findings = append(findings, fmt.Sprintf("log line %d%s holds: %s", n, key, strings.Join(kinds, ", ")))
		}
	}
	return findings
}

func (p *piiScanner) findValue(key string, v any, found map[string]bool) {
	switch v := v.(type) {
	case string:
		p.find(v, key != "stack", found)
	case json.Number:
		p.find(v.String(), false, found)
	case map[string]any:
		for k, x := range v {
			p.findValue(k, x, found)
		}
	case []any:
		for _, x := range v {
			p.findValue(key, x, found)
		}
	}
}

// auditPIILogs runs after a full suite: no recorded PII value may appear in any log line.
func auditPIILogs() int {
	logs := suiteLogs.String()
	values := suitePII.count()
	if values == 0 || !strings.Contains(logs, `"msg":"request"`) {
		fmt.Fprintln(os.Stderr, "log PII audit: no PII values or no request logs recorded; the audit proved nothing")
		return 1
	}
	findings := suitePII.scan(logs)
	for _, f := range findings {
		fmt.Fprintln(os.Stderr, "log PII audit:", f)
	}
	if len(findings) > 0 {
		return 1
	}
	fmt.Fprintf(os.Stderr, "log PII audit: %d log lines, %d PII values, 0 found\n", bytes.Count([]byte(logs), []byte("\n")), values)
	return 0
}

// TestPIIScannerCatchesLeaks plants every kind of value the audit looks for in log lines and
// checks the scanner finds each, and that lookalikes (a duration's digits, a hex id, a line
// number, a masked phone) are not reported.
func TestPIIScannerCatchesLeaks(t *testing.T) {
	p := newPIIScanner()
	phone := randomPhone(t, "AE")
	email := "Leaky.Person" + randDigits(6) + "@Example.org"
	name := "Qarlotta" + randDigits(3)
	token := "rt.me-central1.AbCdEf" + randDigits(20)
	p.add("phone", phone)
	p.add("email", email)
	p.add("name", name)
	p.add("pin", "4812")
	p.add("otp code", "093172")
	p.add("refresh token", token)
	p.add("phone", "not a phone") // not a phone: ignored
	p.add("name", "Al")           // too short to search for

	num, _ := phonenumbers.Parse(phone, "")
	national := phonenumbers.GetNationalSignificantNumber(num)
	digits := strings.TrimPrefix(phone, "+")
	line := func(fields map[string]any) string {
		b, err := json.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	leaks := map[string]string{
		"e164":          line(map[string]any{"msg": "request", "to": phone}),
		"e164 digits":   line(map[string]any{"msg": "sms", "detail": "sent to " + digits + "."}),
		"as a number":   `{"msg":"x","phone":` + digits + `}`,
		"national":      line(map[string]any{"msg": "x", "number": national}),
		"trunk 0":       line(map[string]any{"msg": "x", "number": "0" + national}),
		"email":         line(map[string]any{"msg": "x", "error": "duplicate " + strings.ToLower(email)}),
		"name":          line(map[string]any{"msg": "x", "user": map[string]any{"first": strings.ToUpper(name)}}),
		"pin":           line(map[string]any{"msg": "x", "body": `{"pin":"4812"}`}),
		"code":          line(map[string]any{"msg": "x", "message": "Your code is 093172"}),
		"token":         line(map[string]any{"msg": "x", "headers": []any{"Bearer " + token}}),
		"name in words": line(map[string]any{"msg": "x", "error": "user " + name + "'s profile"}),
		"not json":      "plain text with " + phone,
	}
	for kind, l := range leaks {
		if f := p.scan(l); len(f) != 1 {
			t.Errorf("%s: leak not found in %s", kind, l)
		}
	}

	clean := []string{
		line(map[string]any{"msg": "request", "duration": 0.4812, "bytes": 4812, "status": 200}),
		line(map[string]any{"msg": "request", "request_id": "ab4812cd093172ef", "ts": 1764196000.093172}),
		line(map[string]any{"msg": "panic", "stack": "goroutine 4812 [running]:\nserver.go:4812 +0x93172"}),
		line(map[string]any{"msg": "sms", "to": maskPhone(phone)}),
		// A masked phone whose last four digits happen to equal a test's PIN.
		line(map[string]any{"msg": "sms", "to": maskPhone("+9715012" + "4812")}),
		line(map[string]any{"msg": "x", "v": "Al and not a phone"}),
		line(map[string]any{"msg": "panic", "stack": "server.Test" + name + "(0x1)"}),
		line(map[string]any{"msg": "x", "error": "Xx" + name + "yy"}),
		line(map[string]any{"msg": "x", "duration": json.Number("0." + national)}),
		`{"msg":"x","n":` + national[:len(national)-1] + `}`,
	}
	for _, l := range clean {
		if f := p.scan(l); len(f) != 0 {
			t.Errorf("false positive %v in %s", f, l)
		}
	}
	// Findings name the kind, never the value.
	for _, f := range p.scan(leaks["e164"] + "\n" + leaks["token"]) {
		if strings.Contains(f, phone) || strings.Contains(f, token) {
			t.Errorf("the finding repeats the value: %s", f)
		}
	}
}

// TestPIIAuditWiring: a testEnv's log lines reach suiteLogs, and the PII of a request, its
// answer and its Authorization header are recorded, so the audit after the suite sees them. The
// leak is checked on a copy of a line: a planted leak in suiteLogs would fail the real audit.
func TestPIIAuditWiring(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	phone := randomPhone(t, "GB")
	r := env.do("POST", "/auth/otp/send", map[string]string{"phone": phone, "purpose": "register"})
	code, _ := r.JSON["dev_code"].(string)
	if r.Status != 202 || code == "" {
		t.Fatalf("otp/send: %d %s", r.Status, r.Body)
	}
	v := env.do("POST", "/auth/otp/verify", map[string]string{"phone": phone, "purpose": "register", "code": code})
	token, _ := v.JSON["verification_token"].(string)
	env.do("GET", "/user", nil, bearer("access-token-of-the-wiring-test-0123456789")...)
	if !strings.Contains(suiteLogs.String(), r.Header.Get("X-Request-Id")) {
		t.Fatal("the env's log lines do not reach suiteLogs")
	}
	num, _ := phonenumbers.Parse(phone, "")
	for _, want := range []string{phone, strings.TrimPrefix(phone, "+"), phonenumbers.GetNationalSignificantNumber(num),
		code, token, "access-token-of-the-wiring-test-0123456789"} {
		suitePII.mu.Lock()
		_, ok := suitePII.kinds[strings.ToLower(want)]
		suitePII.mu.Unlock()
		if !ok {
			t.Errorf("not recorded: a value of %d characters", len(want))
		}
	}
	leak := `{"level":"info","msg":"request","request_id":"x","detail":"code ` + code + ` sent"}`
	if f := suitePII.scan(leak); len(f) != 1 {
		t.Errorf("a leaked code is not found: %v", f)
	}
}
