package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"go.uber.org/zap"

	"github.com/7awel/wallet/storage"
)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	routeKey
)

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// clientRequestID is what we accept as a client's X-Request-Id: short and plain, so it cannot
// inject into logs or headers.
var clientRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusRecorder remembers what the handler wrote, for logs and metrics.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// routeHolder lets the router's inner middleware tell the outer one which route matched.
type routeHolder struct{ template string }

// outer wraps the whole router: request id, region header, body limit, retry counting, panic
// recovery, the access log and HTTP metrics. It runs for unmatched routes too.
func (s *Server) outer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !clientRequestID.MatchString(id) {
			id = newRequestID()
		}
		holder := &routeHolder{template: "unmatched"}
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		ctx = context.WithValue(ctx, routeKey, holder)
		ctx = storage.WithRetryCounter(ctx)
		r = r.WithContext(ctx)
		w.Header().Set("X-Request-Id", id)
		w.Header().Set("X-Region", s.cfg.Region)
		// A JSON API needs none of what browsers sniff or frame (reference/security.md §1.9).
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)

		rec := &statusRecorder{ResponseWriter: w}
		s.metrics.inFlight.Inc()
		defer func() {
			s.metrics.inFlight.Dec()
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic", zap.String("request_id", id), zap.String("route", holder.template),
					zap.String("panic", fmt.Sprint(p)), zap.ByteString("stack", debug.Stack()))
				if rec.status == 0 {
					writeProblem(rec, r, &Error{Status: http.StatusInternalServerError, Code: "internal_error",
						Detail: "Something went wrong on our side. The request id identifies it."})
				}
			}
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			elapsed := time.Since(start)
			s.metrics.observe(holder.template, r.Method, rec.status, rec.bytes, elapsed)
			s.log.Info("request",
				zap.String("request_id", id),
				zap.String("method", r.Method),
				zap.String("route", holder.template),
				zap.Int("status", rec.status),
				zap.Int("bytes", rec.bytes),
				zap.Duration("duration", elapsed),
				zap.Int64("tx_retries", storage.Retries(ctx)),
			)
		}()
		next.ServeHTTP(rec, r)
	})
}

// routeName is router middleware (matched routes only): it records the route template, never
// the raw path, for logs and metric labels (reference/ecosystem.md §2.3).
func routeName(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := r.Context().Value(routeKey).(*routeHolder); ok {
			if route := mux.CurrentRoute(r); route != nil {
				if t, err := route.GetPathTemplate(); err == nil {
					h.template = t
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// statusClientClosed is nginx's 499 "client closed request", for requests whose client left.
const statusClientClosed = 499

// handlerFunc is what our handlers are: they return an error instead of writing one.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle adapts a handlerFunc: an error becomes a problem document, logged once here (5xx at
// error level with the request id, 4xx at debug).
func (s *Server) handle(fn handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := fn(w, r)
		if err == nil {
			return
		}
		e := toError(err)
		if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
			// The client went away: nothing of ours failed, and nobody reads this answer. 499
			// (nginx's "client closed request") keeps it out of the 5xx rate.
			e = &Error{Status: statusClientClosed, Code: "client_closed_request", Detail: "The client closed the request.", Err: err}
		}
		fields := []zap.Field{
			zap.String("request_id", requestID(r.Context())),
			zap.Int("status", e.Status),
			zap.String("code", e.Code),
		}
		if e.Status >= 500 {
			s.log.Error("request failed", append(fields, zap.Error(e.Err))...)
		} else {
			s.log.Debug("request refused", fields...)
		}
		setRetriesHeader(w, r)
		writeProblem(w, r, e)
	})
}

// setRetriesHeader reports how many transaction retries the request took (load tests read it).
func setRetriesHeader(w http.ResponseWriter, r *http.Request) {
	if n := storage.Retries(r.Context()); n > 0 {
		w.Header().Set("X-Tx-Retries", strconv.FormatInt(n, 10))
	}
}
