package k6run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dop251/goja"
)

// expectedStatuses is what http.expectedStatuses returns: the statuses that do not count
// in http_req_failed. k6 accepts only such objects as response callbacks, and so do we.
type expectedStatuses struct {
	ranges [][2]int64
}

func defaultExpected() *expectedStatuses { return &expectedStatuses{ranges: [][2]int64{{200, 399}}} }

func (e *expectedStatuses) expected(status int) bool {
	for _, r := range e.ranges {
		if int64(status) >= r[0] && int64(status) <= r[1] {
			return true
		}
	}
	return false
}

// httpModule is `k6/http`: request and its shorthands, batch (sequential), and the
// expected-status callbacks. Every request records k6's http_* metrics.
func (v *vu) httpModule() *goja.Object {
	rt := v.rt
	m := rt.NewObject()
	_ = m.Set("request", func(call goja.FunctionCall) goja.Value {
		return v.request(call.Argument(0).String(), call.Argument(1), call.Argument(2), call.Argument(3))
	})
	noBody := func(method string) func(goja.FunctionCall) goja.Value {
		return func(call goja.FunctionCall) goja.Value {
			return v.request(method, call.Argument(0), goja.Undefined(), call.Argument(1))
		}
	}
	withBody := func(method string) func(goja.FunctionCall) goja.Value {
		return func(call goja.FunctionCall) goja.Value {
			return v.request(method, call.Argument(0), call.Argument(1), call.Argument(2))
		}
	}
	_ = m.Set("get", noBody(http.MethodGet))
	_ = m.Set("head", noBody(http.MethodHead))
	_ = m.Set("post", withBody(http.MethodPost))
	_ = m.Set("put", withBody(http.MethodPut))
	_ = m.Set("patch", withBody(http.MethodPatch))
	_ = m.Set("del", withBody(http.MethodDelete))
	_ = m.Set("options", withBody(http.MethodOptions))
	_ = m.Set("batch", func(call goja.FunctionCall) goja.Value {
		reqs, ok := call.Argument(0).(*goja.Object)
		if !ok {
			v.throw("http.batch needs an array or an object of requests")
		}
		one := func(item goja.Value) goja.Value {
			if obj, ok := item.(*goja.Object); ok {
				if obj.ClassName() == "Array" {
					return v.request(obj.Get("0").String(), obj.Get("1"), obj.Get("2"), obj.Get("3"))
				}
				method := http.MethodGet
				if mv := obj.Get("method"); mv != nil && !goja.IsUndefined(mv) {
					method = mv.String()
				}
				return v.request(method, obj.Get("url"), obj.Get("body"), obj.Get("params"))
			}
			return v.request(http.MethodGet, item, goja.Undefined(), goja.Undefined())
		}
		if reqs.ClassName() == "Array" {
			n := int(reqs.Get("length").ToInteger())
			out := make([]any, n)
			for i := 0; i < n; i++ {
				out[i] = one(reqs.Get(strconv.Itoa(i)))
			}
			return rt.ToValue(rt.NewArray(out...))
		}
		out := rt.NewObject()
		for _, k := range reqs.Keys() {
			_ = out.Set(k, one(reqs.Get(k)))
		}
		return out
	})
	_ = m.Set("expectedStatuses", func(call goja.FunctionCall) goja.Value {
		e := &expectedStatuses{}
		for _, a := range call.Arguments {
			if obj, ok := a.(*goja.Object); ok {
				lo, hi := obj.Get("min"), obj.Get("max")
				if lo == nil || hi == nil {
					v.throw("expectedStatuses: an object argument needs min and max")
				}
				e.ranges = append(e.ranges, [2]int64{lo.ToInteger(), hi.ToInteger()})
				continue
			}
			n := a.ToInteger()
			e.ranges = append(e.ranges, [2]int64{n, n})
		}
		return rt.ToValue(e)
	})
	_ = m.Set("setResponseCallback", func(call goja.FunctionCall) goja.Value {
		v.responseCallback = v.callbackArg(call.Argument(0))
		return goja.Undefined()
	})
	return m
}

// callbackArg accepts null (nothing is a failure) or an http.expectedStatuses object.
func (v *vu) callbackArg(val goja.Value) *expectedStatuses {
	if goja.IsNull(val) {
		return &expectedStatuses{}
	}
	if e, ok := val.Export().(*expectedStatuses); ok {
		return e
	}
	v.throw("response callbacks must be made by http.expectedStatuses() (or be null)")
	return nil
}

type requestParams struct {
	headers      http.Header
	tags         map[string]string
	timeout      time.Duration
	responseType string
	callback     *expectedStatuses
	noRedirects  bool
}

func (v *vu) params(val goja.Value) requestParams {
	p := requestParams{headers: http.Header{}, timeout: 60 * time.Second, responseType: "text", callback: v.responseCallback}
	obj, ok := val.(*goja.Object)
	if !ok {
		return p
	}
	for _, k := range obj.Keys() {
		x := obj.Get(k)
		switch k {
		case "headers":
			h := x.ToObject(v.rt)
			for _, name := range h.Keys() {
				p.headers.Set(name, h.Get(name).String())
			}
		case "tags":
			p.tags = v.tagsArg(x)
		case "timeout":
			if s, isStr := x.Export().(string); isStr {
				d, err := time.ParseDuration(s)
				if err != nil {
					v.throw("params.timeout %q: %v", s, err)
				}
				p.timeout = d
			} else {
				p.timeout = time.Duration(x.ToFloat() * float64(time.Millisecond))
			}
		case "responseType":
			p.responseType = x.String()
			if p.responseType != "text" && p.responseType != "binary" && p.responseType != "none" {
				v.throw("params.responseType %q: want text, binary or none", p.responseType)
			}
		case "responseCallback":
			p.callback = v.callbackArg(x)
		case "redirects":
			p.noRedirects = x.ToInteger() == 0
		case "cookies", "jar", "auth", "compression":
			v.throw("params.%s is not supported by k6run", k)
		}
	}
	return p
}

// body turns a request body argument into bytes: strings as they are, ArrayBuffers as
// bytes, plain objects form-encoded (as k6 does; JSON bodies must be stringified).
func (v *vu) body(val goja.Value, headers http.Header) []byte {
	if val == nil || goja.IsUndefined(val) || goja.IsNull(val) {
		return nil
	}
	switch x := val.Export().(type) {
	case string:
		return []byte(x)
	case goja.ArrayBuffer:
		return x.Bytes()
	case map[string]any:
		form := url.Values{}
		for k, val := range x {
			form.Set(k, fmt.Sprint(val))
		}
		if headers.Get("Content-Type") == "" {
			headers.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		return []byte(form.Encode())
	}
	return []byte(val.String())
}

func (v *vu) request(method string, urlVal, bodyVal, paramsVal goja.Value) goja.Value {
	if v.phase == phaseInit {
		v.throw("making HTTP requests in the init context is not supported")
	}
	rt := v.rt
	rawURL := urlVal.String()
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		v.throw("invalid URL %q", rawURL)
	}
	p := v.params(paramsVal)
	body := v.body(bodyVal, p.headers)
	if p.headers.Get("User-Agent") == "" {
		p.headers.Set("User-Agent", "k6run (7awel loadtest)")
	}

	ctx, cancel := context.WithTimeout(v.r.ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, strings.ToUpper(method), rawURL, bytes.NewReader(body))
	if err != nil {
		v.throw("http.request: %v", err)
	}
	req.Header = p.headers
	client := v.r.client
	if p.noRedirects {
		c := *client
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		client = &c
	}

	start := time.Now()
	resp, doErr := client.Do(req)
	waiting := msSince(start)
	var respBody []byte
	var readErr error
	if doErr == nil {
		respBody, readErr = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	duration := msSince(start)

	res := rt.NewObject()
	status, errMsg, errCode := 0, "", 0
	headers := rt.NewObject()
	proto := ""
	if doErr != nil || readErr != nil {
		err := errors.Join(doErr, readErr)
		errMsg, errCode = err.Error(), 1000
		if errors.Is(err, context.DeadlineExceeded) {
			errCode = 1050 // k6's request timeout code
		}
		v.r.logf("warn [VU %d] request failed: %s %s: %v\n", v.id, method, rawURL, err)
	}
	if resp != nil {
		status, proto = resp.StatusCode, resp.Proto
		for k, vals := range resp.Header {
			_ = headers.Set(k, strings.Join(vals, ", "))
		}
	}
	_ = res.Set("status", status)
	statusText := ""
	if resp != nil {
		statusText = resp.Status
	}
	_ = res.Set("status_text", statusText)
	_ = res.Set("headers", headers)
	_ = res.Set("url", rawURL)
	_ = res.Set("proto", proto)
	_ = res.Set("error", errMsg)
	_ = res.Set("error_code", errCode)
	_ = res.Set("cookies", rt.NewObject())
	switch {
	case p.responseType == "none":
		_ = res.Set("body", goja.Null())
	case p.responseType == "binary":
		_ = res.Set("body", rt.NewArrayBuffer(respBody))
	default:
		_ = res.Set("body", string(respBody))
	}
	timings := rt.NewObject()
	for k, val := range map[string]float64{"duration": duration, "waiting": waiting, "receiving": duration - waiting,
		"blocked": 0, "connecting": 0, "tls_handshaking": 0, "sending": 0} {
		_ = timings.Set(k, val)
	}
	_ = res.Set("timings", timings)
	reqObj := rt.NewObject()
	_ = reqObj.Set("method", req.Method)
	_ = reqObj.Set("url", rawURL)
	_ = reqObj.Set("body", string(body))
	reqHeaders := rt.NewObject()
	for k, vals := range req.Header {
		_ = reqHeaders.Set(k, rt.NewArray(toAny(vals)...))
	}
	_ = reqObj.Set("headers", reqHeaders)
	_ = res.Set("request", reqObj)
	_ = res.Set("json", func(call goja.FunctionCall) goja.Value {
		if len(call.Arguments) > 0 && !goja.IsUndefined(call.Argument(0)) {
			v.throw("k6run: Response.json(selector) is not supported; use json() and index it")
		}
		if p.responseType != "text" {
			v.throw("Response.json() needs responseType text")
		}
		out, err := v.parseJSON(string(respBody))
		if err != nil {
			panic(err)
		}
		return out
	})
	_ = res.Set("html", func(goja.FunctionCall) goja.Value {
		v.throw("k6run: Response.html() is not supported")
		return nil
	})

	// Metrics, tagged as k6 tags them.
	name := rawURL
	if n, ok := p.tags["name"]; ok {
		name = n
	}
	expected := p.callback.expected(status)
	tags := v.sampleTags(p.tags)
	tags["method"] = req.Method
	tags["url"] = rawURL
	tags["name"] = name
	tags["status"] = strconv.Itoa(status)
	tags["expected_response"] = strconv.FormatBool(expected)
	if errCode != 0 {
		tags["error_code"] = strconv.Itoa(errCode)
	}
	reg := v.r.metrics
	reg.add("http_reqs", "counter", false, 1, tags)
	reg.add("http_req_duration", "trend", true, duration, tags)
	reg.add("http_req_waiting", "trend", true, waiting, tags)
	reg.add("http_req_receiving", "trend", true, duration-waiting, tags)
	failed := 1.0
	if expected {
		failed = 0
	}
	reg.add("http_req_failed", "rate", false, failed, tags)
	reg.add("data_sent", "counter", false, float64(len(body)), tags)
	reg.add("data_received", "counter", false, float64(len(respBody)), tags)
	return res
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
