package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"
)

// SMSSender delivers a text message to a phone (E.164). Send is called after the database
// transaction that recorded the code has committed, never inside a retried closure (design.md,
// Two engines), so a retry can never send twice.
type SMSSender interface {
	Send(ctx context.Context, phone, message string) error
	// ExposesCode reports whether the API may return the code to the client (development only).
	ExposesCode() bool
}

// DevSMS is the development sender: it sends nothing and logs a masked line (never the code or
// the number: logs hold no PII or secrets); the API returns the code as dev_code instead.
type DevSMS struct{ Log *zap.Logger }

func (d DevSMS) Send(ctx context.Context, phone, message string) error {
	d.Log.Info("sms (development: not sent; the code is in the API answer as dev_code)",
		zap.String("to", maskPhone(phone)), zap.Int("length", len(message)))
	return nil
}

func (DevSMS) ExposesCode() bool { return true }

// WebhookSMS posts each message as JSON {"to": "+…", "message": "…"} to a provider's HTTP
// endpoint (SMS_WEBHOOK_URL); any 2xx is success. The URL may carry the provider's credentials,
// so it is never logged.
type WebhookSMS struct {
	URL    string
	Client *http.Client
}

// NewWebhookSMS checks the URL (https, or http for a loopback relay) and returns the sender.
func NewWebhookSMS(rawURL string) (*WebhookSMS, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, errors.New("SMS_WEBHOOK_URL: want an http(s) URL")
	}
	return &WebhookSMS{URL: rawURL, Client: &http.Client{Timeout: 10 * time.Second}}, nil
}

func (w *WebhookSMS) Send(ctx context.Context, phone, message string) error {
	body, _ := json.Marshal(map[string]string{"to": phone, "message": message})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("sms webhook: bad request")
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := w.Client.Do(req)
	if err != nil {
		// The error text names the URL, which may hold credentials: keep only its kind.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("sms webhook: %w", err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("sms webhook: status %d", res.StatusCode)
	}
	return nil
}

func (*WebhookSMS) ExposesCode() bool { return false }

// noSMS refuses to send: a production server built without a sender answers 502 rather than
// pretend a code went out.
type noSMS struct{}

func (noSMS) Send(context.Context, string, string) error {
	return errors.New("no SMS sender configured")
}
func (noSMS) ExposesCode() bool { return false }
