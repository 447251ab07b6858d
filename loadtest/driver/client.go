package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shopspring/decimal"
)

// Client is the part of the 7awel API (shared/spec/api.md) the driver uses. It is safe for
// concurrent use.
type Client struct {
	base   string
	http   *http.Client // for URLs outside the API (the server's /metrics)
	conns  *connPool    // the API's requests (conn.go)
	opsKey string
	pin    string
	// retries is how many times a request whose connection failed is sent again.
	retries int
	// patient clients (setup and teardown, which are not measured) send a request again
	// after a 503, as the API asks ("retry the same request shortly", Retry-After): the
	// server answers 503 only when its transaction was rolled back. The load phase's client
	// never waits: there a 503 is a failure to report.
	patient bool
	connErr error // a base URL the connection pool cannot serve
}

// Patient returns a client that waits out 503 answers (see Client.patient), sharing the
// connections of c.
func (c *Client) Patient() *Client {
	p := *c
	p.patient = true
	return &p
}

// NewClient talks to base (http://host:port). The transport keeps up to conns idle
// connections, so that closed-loop workers reuse theirs instead of opening one per request.
func NewClient(base, opsKey, pin string, conns int, timeout time.Duration) *Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns + 8,
		MaxIdleConnsPerHost: conns + 8,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	c := &Client{base: strings.TrimRight(base, "/"), http: &http.Client{Transport: tr, Timeout: timeout},
		opsKey: opsKey, pin: pin, retries: 2}
	if strings.HasPrefix(c.base, "http://") {
		c.conns, c.connErr = newConnPool(c.base, conns+8, timeout)
	}
	return c
}

// roundTrip sends one request through the driver's own pool (http:// targets) or net/http
// (https://, only with AllowRemote).
func (c *Client) roundTrip(ctx context.Context, method, path string, hdr []string, body []byte) (int, http.Header, []byte, error) {
	if c.conns != nil {
		return c.conns.roundTrip(ctx, method, path, hdr, body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data, err
}

// Close drops the client's idle connections.
func (c *Client) Close() {
	if c.conns != nil {
		c.conns.close()
	}
	c.http.CloseIdleConnections()
}

// Response is one answer, after any transport retries.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// Latency is from the first send to the last byte of the answer, retries included: what
	// the caller waited.
	Latency time.Duration
	// TransportRetries is how many times the request was sent again after a transport error.
	TransportRetries int
}

// Code is the problem document's `code`, or "" when the body is not one.
func (r *Response) Code() string {
	var p struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(r.Body, &p) != nil {
		return ""
	}
	return p.Code
}

// TxRetries is the server's X-Tx-Retries: database retries it made for this request.
func (r *Response) TxRetries() int64 {
	n, _ := strconv.ParseInt(r.Header.Get("X-Tx-Retries"), 10, 64)
	return n
}

// Replayed says whether the server answered with a stored result (Idempotent-Replayed).
func (r *Response) Replayed() bool { return r.Header.Get("Idempotent-Replayed") == "true" }

// TransportError is a request that got no HTTP answer, even after retries.
type TransportError struct {
	Method, Path string
	Attempts     int
	Err          error
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("%s %s: no answer after %d attempts: %v", e.Method, e.Path, e.Attempts, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// Kind is a short class of the failure for the report's error table.
func (e *TransportError) Kind() string {
	var ne net.Error
	switch {
	case errors.Is(e.Err, context.DeadlineExceeded), errors.As(e.Err, &ne) && ne.Timeout(), errors.Is(e.Err, os.ErrDeadlineExceeded):
		return "transport: timeout"
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		return "transport: connection refused"
	case errors.Is(e.Err, syscall.ECONNRESET), errors.Is(e.Err, io.EOF), errors.Is(e.Err, io.ErrUnexpectedEOF):
		return "transport: connection reset"
	}
	return "transport: other"
}

// APIError is an answer with an unexpected status, for setup, where any is fatal.
type APIError struct {
	What   string
	Status int
	Code   string
	Body   string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: HTTP %d %s: %.300s", e.What, e.Status, e.Code, e.Body)
}

type request struct {
	method, path, token string
	ops                 bool
	body                any
	// idempotent requests are sent again after a transport error. Transfers qualify because
	// the repeat carries the same reference, so the server applies it at most once.
	idempotent bool
}

// busyRetries bounds the 503 retries of a patient client's request.
const busyRetries = 8

// retryAfter is the server's Retry-After in seconds, capped, or a short default.
func retryAfter(h http.Header, attempt int) time.Duration {
	if n, err := strconv.Atoi(h.Get("Retry-After")); err == nil && n >= 0 {
		return min(time.Duration(n)*time.Second, 2*time.Second)
	}
	return time.Duration(attempt+1) * 100 * time.Millisecond
}

func (c *Client) do(ctx context.Context, r request) (*Response, error) {
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return nil, err
		}
	}
	if c.connErr != nil {
		return nil, c.connErr
	}
	hdr := make([]string, 0, 4)
	hdr = append(hdr, "Accept: application/json")
	if payload != nil {
		hdr = append(hdr, "Content-Type: application/json")
	}
	if r.token != "" {
		hdr = append(hdr, "Authorization: Bearer "+r.token)
	}
	if r.ops {
		hdr = append(hdr, "X-Ops-Key: "+c.opsKey)
	}
	attempts := 1
	if r.idempotent {
		attempts += c.retries
	}
	start := time.Now()
	var lastErr error
	busy := 0
	for a := 0; a < attempts; a++ {
		if a > 0 {
			// A short pause: a reset connection is usually a server under pressure.
			select {
			case <-time.After(time.Duration(a) * 20 * time.Millisecond):
			case <-ctx.Done():
				return nil, &TransportError{r.method, r.path, a, ctx.Err()}
			}
		}
		status, header, body, err := c.roundTrip(ctx, r.method, r.path, hdr, payload)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				return nil, &TransportError{r.method, r.path, a + 1, err}
			}
			continue
		}
		if c.patient && status == http.StatusServiceUnavailable && busy < busyRetries {
			select {
			case <-time.After(retryAfter(header, busy)):
			case <-ctx.Done():
				return nil, &TransportError{r.method, r.path, a + 1, ctx.Err()}
			}
			busy++
			a-- // a busy answer is not a transport failure: it does not use up those retries
			continue
		}
		return &Response{Status: status, Header: header, Body: body,
			Latency: time.Since(start), TransportRetries: a}, nil
	}
	return nil, &TransportError{r.method, r.path, attempts, lastErr}
}

// expect decodes a JSON answer with the wanted status into out, or returns an APIError.
func expect(what string, res *Response, out any, statuses ...int) error {
	for _, s := range statuses {
		if res.Status == s {
			if out == nil {
				return nil
			}
			if err := json.Unmarshal(res.Body, out); err != nil {
				return fmt.Errorf("%s: HTTP %d with a body that is not the expected JSON: %w", what, res.Status, err)
			}
			return nil
		}
	}
	return &APIError{What: what, Status: res.Status, Code: res.Code(), Body: string(res.Body)}
}

// User is a signed-in user of a run.
type User struct {
	ID    string `json:"id"`
	Phone string `json:"phone"`
	Token string `json:"-"`
}

// VerifyPhone sends an OTP for purpose, reads it from dev_code (development mode only) and
// verifies it; the answer is the verification token.
func (c *Client) VerifyPhone(ctx context.Context, phone, purpose string) (string, error) {
	res, err := c.do(ctx, request{method: "POST", path: "/auth/otp/send",
		body: map[string]string{"phone": phone, "purpose": purpose}})
	if err != nil {
		return "", err
	}
	var sent struct {
		DevCode string `json:"dev_code"`
	}
	if err := expect("POST /auth/otp/send", res, &sent, http.StatusAccepted); err != nil {
		return "", err
	}
	if sent.DevCode == "" {
		return "", errors.New("POST /auth/otp/send: no dev_code in the answer: the server must run with APP_ENV=development")
	}
	res, err = c.do(ctx, request{method: "POST", path: "/auth/otp/verify",
		body: map[string]string{"phone": phone, "purpose": purpose, "code": sent.DevCode}})
	if err != nil {
		return "", err
	}
	var verified struct {
		Token string `json:"verification_token"`
	}
	if err := expect("POST /auth/otp/verify", res, &verified, http.StatusOK); err != nil {
		return "", err
	}
	if verified.Token == "" {
		return "", errors.New("POST /auth/otp/verify: empty verification_token")
	}
	return verified.Token, nil
}

type authAnswer struct {
	User   User `json:"user"`
	Tokens struct {
		AccessToken string `json:"access_token"`
	} `json:"tokens"`
}

func (a authAnswer) user(what, phone string) (User, error) {
	if a.User.ID == "" || a.Tokens.AccessToken == "" {
		return User{}, fmt.Errorf("%s: answer without user.id or tokens.access_token", what)
	}
	u := a.User
	u.Phone, u.Token = phone, a.Tokens.AccessToken
	return u, nil
}

// SignUp registers a new user (OTP, then POST /user). A phone that is already registered
// gives an APIError with code phone_taken.
func (c *Client) SignUp(ctx context.Context, phone, first, last, device string) (User, error) {
	vt, err := c.VerifyPhone(ctx, phone, "register")
	if err != nil {
		return User{}, err
	}
	res, err := c.do(ctx, request{method: "POST", path: "/user", body: map[string]string{
		"verification_token": vt, "first_name": first, "last_name": last, "pin": c.pin, "device_id": device}})
	if err != nil {
		return User{}, err
	}
	var a authAnswer
	if err := expect("POST /user", res, &a, http.StatusCreated); err != nil {
		return User{}, err
	}
	return a.user("POST /user", phone)
}

// Login signs an existing user in on device (OTP for login, then POST /auth/login).
func (c *Client) Login(ctx context.Context, phone, device string) (User, error) {
	vt, err := c.VerifyPhone(ctx, phone, "login")
	if err != nil {
		return User{}, err
	}
	res, err := c.do(ctx, request{method: "POST", path: "/auth/login", body: map[string]string{
		"phone": phone, "pin": c.pin, "device_id": device, "verification_token": vt}})
	if err != nil {
		return User{}, err
	}
	var a authAnswer
	if err := expect("POST /auth/login", res, &a, http.StatusOK); err != nil {
		return User{}, err
	}
	return a.user("POST /auth/login", phone)
}

// SignUpOrLogin signs a user up, or logs them in when the phone is taken (a run id used
// before against the same database).
func (c *Client) SignUpOrLogin(ctx context.Context, phone, first, last, device string) (User, error) {
	u, err := c.SignUp(ctx, phone, first, last, device)
	var ae *APIError
	if errors.As(err, &ae) && ae.Code == "phone_taken" {
		return c.Login(ctx, phone, device)
	}
	return u, err
}

// CashIn funds a user with the operator key; idempotent by reference (a repeat is 200).
func (c *Client) CashIn(ctx context.Context, userID, amount, asset, reference string) error {
	res, err := c.do(ctx, request{method: "POST", path: "/ops/cash-in", ops: true, idempotent: true,
		body: map[string]string{"user_id": userID, "amount": amount, "asset": asset, "reference": reference}})
	if err != nil {
		return err
	}
	return expect("POST /ops/cash-in", res, nil, http.StatusCreated, http.StatusOK)
}

// Balances returns the `total` of each of the caller's balances.
func (c *Client) Balances(ctx context.Context, token string) (map[string]decimal.Decimal, error) {
	res, err := c.do(ctx, request{method: "GET", path: "/wallet/balances", token: token, idempotent: true})
	if err != nil {
		return nil, err
	}
	return parseBalances(res)
}

// BalancesRaw is GET /wallet/balances as an answer, for the load phase.
func (c *Client) BalancesRaw(ctx context.Context, token string) (*Response, error) {
	return c.do(ctx, request{method: "GET", path: "/wallet/balances", token: token, idempotent: true})
}

func parseBalances(res *Response) (map[string]decimal.Decimal, error) {
	var b struct {
		Balances []struct {
			Asset string          `json:"asset"`
			Total decimal.Decimal `json:"total"`
		} `json:"balances"`
	}
	if err := expect("GET /wallet/balances", res, &b, http.StatusOK); err != nil {
		return nil, err
	}
	out := make(map[string]decimal.Decimal, len(b.Balances))
	for _, x := range b.Balances {
		out[x.Asset] = x.Total
	}
	return out, nil
}

// History is GET /transactions?limit=n.
func (c *Client) History(ctx context.Context, token string, limit int) (*Response, error) {
	return c.do(ctx, request{method: "GET", path: "/transactions?limit=" + strconv.Itoa(limit), token: token, idempotent: true})
}

// Me is GET /user.
func (c *Client) Me(ctx context.Context, token string) (*Response, error) {
	return c.do(ctx, request{method: "GET", path: "/user", token: token, idempotent: true})
}

// Transfer is one payment; exactly one of recipientID and recipientPhone is set. It is sent
// again with the same reference after a transport error.
type Transfer struct {
	RecipientID, RecipientPhone string
	Amount, Asset, Reference    string
}

// sendBody is POST /transactions/send's body; a struct, not a map, because the load phase
// encodes one per request on the same cores as the server.
type sendBody struct {
	RecipientID    string `json:"recipient_id,omitempty"`
	RecipientPhone string `json:"recipient_phone,omitempty"`
	Amount         string `json:"amount"`
	Asset          string `json:"asset"`
	Reference      string `json:"reference"`
	PIN            string `json:"pin"`
}

// Send is POST /transactions/send.
func (c *Client) Send(ctx context.Context, token string, t Transfer) (*Response, error) {
	body := sendBody{Amount: t.Amount, Asset: t.Asset, Reference: t.Reference, PIN: c.pin}
	if t.RecipientPhone != "" {
		body.RecipientPhone = t.RecipientPhone
	} else {
		body.RecipientID = t.RecipientID
	}
	return c.do(ctx, request{method: "POST", path: "/transactions/send", token: token, body: body, idempotent: true})
}

// SentTransaction is the part of a transfer's answer the driver checks.
type SentTransaction struct {
	ID        string          `json:"id"`
	Reference string          `json:"reference"`
	Amount    decimal.Decimal `json:"amount"`
	Fee       decimal.Decimal `json:"fee"`
}

// ParseTransaction reads a transaction answer, whether it is the body or under
// `transaction` (as the cash-out answer nests it).
func ParseTransaction(body []byte) (SentTransaction, error) {
	var a struct {
		SentTransaction
		Transaction *SentTransaction `json:"transaction"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return SentTransaction{}, err
	}
	t := a.SentTransaction
	if a.Transaction != nil {
		t = *a.Transaction
	}
	if t.ID == "" {
		return SentTransaction{}, errors.New("transaction answer without id")
	}
	return t, nil
}

// IsLoopback says whether base names this machine: the driver creates users and moves money,
// so by default it only runs against a local server.
func IsLoopback(base string) bool {
	u, err := url.Parse(base)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
