package driver

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConnPool drives the driver's own HTTP/1.1 transport against net/http's server: requests
// and answers arrive whole (headers, body, chunked answers), connections are reused, a
// connection the server closes or that sat idle too long is not, and a cancelled request
// returns at once.
func TestConnPool(t *testing.T) {
	var dials atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Got", r.Method+" "+r.Header.Get("Authorization")+" "+r.Header.Get("Content-Type")+" "+r.Host)
			w.WriteHeader(http.StatusCreated)
			w.Write(body)
		case "/chunked":
			for i := range 3 {
				io.WriteString(w, strings.Repeat(string(rune('a'+i)), 5000))
				w.(http.Flusher).Flush()
			}
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		case "/slow":
			<-release
		default:
			w.Header().Set("X-Path", r.URL.Path)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	defer close(release)

	p, err := newConnPool(srv.URL, 4, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	ctx := context.Background()
	for i := range 3 {
		status, h, body, err := p.roundTrip(ctx, "POST", "/echo", []string{"Authorization: Bearer tok", "Content-Type: application/json"}, []byte(`{"n":1}`))
		if err != nil || status != http.StatusCreated || string(body) != `{"n":1}` ||
			h.Get("X-Got") != "POST Bearer tok application/json "+strings.TrimPrefix(srv.URL, "http://") {
			t.Fatalf("request %d: %d %q %q %v", i, status, h.Get("X-Got"), body, err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("3 sequential requests opened %d connections, want 1 reused", n)
	}
	if status, _, body, err := p.roundTrip(ctx, "GET", "/chunked", nil, nil); err != nil || status != 200 ||
		len(body) != 15000 || body[0] != 'a' || body[14999] != 'c' {
		t.Fatalf("chunked answer: %d, %d bytes, %v", status, len(body), err)
	}
	if _, _, body, err := p.roundTrip(ctx, "GET", "/close", nil, nil); err != nil || string(body) != "bye" {
		t.Fatalf("closing answer: %q %v", body, err)
	}
	if _, _, _, err := p.roundTrip(ctx, "POST", "/echo", nil, nil); err != nil {
		t.Fatalf("after the server closed the connection: %v", err)
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d connections after the server closed one, want 2", n)
	}
	// An idle connection past maxIdleAge is closed, not reused.
	p.mu.Lock()
	for _, pc := range p.idle {
		pc.used = time.Now().Add(-maxIdleAge - time.Second)
	}
	p.mu.Unlock()
	if _, _, _, err := p.roundTrip(ctx, "POST", "/echo", nil, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n := dials.Load(); n != 3 {
		t.Fatalf("%d connections after the idle one aged out, want 3", n)
	}

	// Concurrent requests each get a connection of their own; all come back.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, body, err := p.roundTrip(ctx, "POST", "/echo", nil, []byte("y")); err != nil || string(body) != "y" {
				t.Errorf("concurrent: %q %v", body, err)
			}
		}()
	}
	wg.Wait()

	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, _, _, err := p.roundTrip(cctx, "GET", "/slow", nil, nil)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("cancelled request: %v, want a timeout error", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a cancelled request did not return")
	}

	// A base URL with a path (the API behind a prefix) keeps it.
	pp, err := newConnPool(srv.URL+"/pre/", 1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer pp.close()
	if _, h, _, err := pp.roundTrip(ctx, "GET", "/path", nil, nil); err != nil || h.Get("X-Path") != "/pre/path" {
		t.Fatalf("base path: %q, %v", h.Get("X-Path"), err)
	}

	if _, err := newConnPool("https://example.com", 1, time.Second); err == nil {
		t.Error("an https target must be refused by the pool (the client uses net/http for it)")
	}
}
