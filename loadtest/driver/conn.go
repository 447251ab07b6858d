package driver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// connPool is the driver's own HTTP/1.1 transport: persistent connections, each used by one
// request at a time in the caller's goroutine. The load generator shares the machine's cores
// with the server and PostgreSQL, so what it spends is taken from what it measures. With
// net/http's Transport every request crossed three goroutines (the caller, the connection's
// writeLoop and readLoop) and their channels; in the open-loop run at half the peak rate, where
// each request wakes the runtime on its own, the driver spent about 0.4 ms of CPU per transfer,
// more than half the server's. Here the caller writes the request and reads the answer itself
// (http.ReadResponse parses it: chunked bodies, keep-alive); a connection that failed or that
// the server closes is dropped, and the next request dials a new one. A connection idle for
// longer than maxIdleAge is not reused: a server or proxy may have closed it meanwhile, and a
// request sent on it might or might not have been read (net/http's Transport watches for that
// close in its readLoop; this pool avoids the case instead). Failed requests are the caller's to
// send again (Client.do does so for idempotent ones).
type connPool struct {
	host    string // host:port
	hostHdr string // the Host header
	prefix  string // the base URL's path, before every request's
	timeout time.Duration
	dialer  net.Dialer

	mu   sync.Mutex
	idle []*pconn
	max  int
}

type pconn struct {
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	buf  []byte
	used time.Time
}

// maxIdleAge is how long a connection may sit idle and still be reused: well under the idle
// timeouts of 7awel's server (120 s) and of common proxies (60–75 s).
const maxIdleAge = 30 * time.Second

func newConnPool(base string, maxIdle int, timeout time.Duration) (*connPool, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("driver: %s: only http:// targets (the driver runs next to the server it measures)", base)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	return &connPool{host: host, hostHdr: u.Host, prefix: strings.TrimRight(u.EscapedPath(), "/"), timeout: timeout, max: maxIdle,
		dialer: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}}, nil
}

func (p *connPool) get(ctx context.Context) (*pconn, error) {
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		pc := p.idle[n-1]
		p.idle = p.idle[:n-1]
		if time.Since(pc.used) < maxIdleAge {
			p.mu.Unlock()
			return pc, nil
		}
		pc.c.Close()
	}
	p.mu.Unlock()
	c, err := p.dialer.DialContext(ctx, "tcp", p.host)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return &pconn{c: c, r: bufio.NewReaderSize(c, 8<<10), w: bufio.NewWriterSize(c, 4<<10)}, nil
}

func (p *connPool) put(pc *pconn) {
	pc.used = time.Now()
	p.mu.Lock()
	if len(p.idle) < p.max {
		p.idle = append(p.idle, pc)
		pc = nil
	}
	p.mu.Unlock()
	if pc != nil {
		pc.c.Close()
	}
}

// close drops every idle connection.
func (p *connPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, pc := range idle {
		pc.c.Close()
	}
}

// roundTrip sends one request on a pooled connection and reads its whole answer. hdr holds
// extra header lines ("Name: value"); body may be nil.
func (p *connPool) roundTrip(ctx context.Context, method, path string, hdr []string, body []byte) (int, http.Header, []byte, error) {
	pc, err := p.get(ctx)
	if err != nil {
		return 0, nil, nil, err
	}
	deadline := time.Now().Add(p.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := pc.c.SetDeadline(deadline); err != nil {
		pc.c.Close()
		return 0, nil, nil, err
	}
	// A cancelled context interrupts a blocked read or write through the deadline; a
	// connection whose deadline it may have moved is never reused.
	stop := context.AfterFunc(ctx, func() { _ = pc.c.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (int, http.Header, []byte, error) {
		stop()
		pc.c.Close()
		return 0, nil, nil, err
	}

	b := pc.buf[:0]
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, p.prefix...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, p.hostHdr...)
	b = append(b, "\r\nUser-Agent: 7awel-loadtest\r\n"...)
	for _, h := range hdr {
		b = append(b, h...)
		b = append(b, "\r\n"...)
	}
	if body != nil || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	pc.buf = b
	if _, err := pc.w.Write(b); err != nil {
		return fail(err)
	}
	if _, err := pc.w.Write(body); err != nil {
		return fail(err)
	}
	if err := pc.w.Flush(); err != nil {
		return fail(err)
	}
	resp, err := http.ReadResponse(pc.r, &http.Request{Method: method})
	if err != nil {
		return fail(err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fail(err)
	}
	if !stop() || resp.Close {
		pc.c.Close()
	} else {
		p.put(pc)
	}
	return resp.StatusCode, resp.Header, data, nil
}
