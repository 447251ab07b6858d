package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gorilla/mux"
)

// The OpenAPI document is the checked contract: every registered route is documented, and every
// response an HTTP test receives on a documented route is validated against it (testEnv.do
// calls checkResponse).

var apiDoc struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

// loadAPIDoc loads openapi.yaml and, while the lead has not merged it, openapi-money.yaml (the
// money paths and schemas, same format).
func loadAPIDoc() (*openapi3.T, routers.Router, error) {
	apiDoc.once.Do(func() {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(openapiDoc)
		if err != nil {
			apiDoc.err = err
			return
		}
		if raw, err := os.ReadFile("openapi-money.yaml"); err == nil {
			if err := mergeDoc(doc, raw); err != nil {
				apiDoc.err = err
				return
			}
		}
		if err := doc.Validate(context.Background()); err != nil {
			apiDoc.err = err
			return
		}
		// Match any host: the tests' server listens on a random port.
		doc.Servers = openapi3.Servers{{URL: "/"}}
		apiDoc.doc = doc
		apiDoc.router, apiDoc.err = gorillamux.NewRouter(doc)
	})
	return apiDoc.doc, apiDoc.router, apiDoc.err
}

// mergeDoc adds the paths and schemas of a partial document (`paths:` and `components:`).
func mergeDoc(doc *openapi3.T, raw []byte) error {
	part, err := openapi3.NewLoader().LoadFromData(append([]byte("openapi: 3.1.0\ninfo: {title: money, version: \"1\"}\n"), raw...))
	if err != nil {
		return err
	}
	for path, item := range part.Paths.Map() {
		doc.Paths.Set(path, item)
	}
	if part.Components != nil {
		for name, s := range part.Components.Schemas {
			doc.Components.Schemas[name] = s
		}
		for name, r := range part.Components.Responses {
			if _, ok := doc.Components.Responses[name]; !ok {
				doc.Components.Responses[name] = r
			}
		}
	}
	return nil
}

// checkResponse validates a response against the document when its route is documented.
// Undocumented statuses fail too.
func checkResponse(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	if err := responseMismatch(req, status, header, body); err != nil {
		t.Errorf("%s %s → %d does not match the OpenAPI document: %v\nbody: %s", req.Method, req.URL.Path, status, err, body)
	}
}

// responseMismatch is nil when the response matches the document (or its route is not
// documented: 404 tests, /metrics).
func responseMismatch(req *http.Request, status int, header http.Header, body []byte) error {
	_, router, err := loadAPIDoc()
	if err != nil {
		return fmt.Errorf("openapi document: %w", err)
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		return nil
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
		AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
	return openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts},
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                opts,
	})
}

// TestOpenAPICheckCatchesDrift: the response check is not a formality: a body missing a
// required field, an extra field, a wrong type or an undocumented status fails it.
func TestOpenAPICheckCatchesDrift(t *testing.T) {
	t.Parallel()
	req := httptest.NewRequest("GET", "http://api.test/user/settings", nil)
	h := http.Header{"Content-Type": {"application/json"}}
	good := `{"language":"en","theme":"light","daily_limit":null,"notifications":{"push_enabled":true,"transaction_alerts":true,"security_alerts":true,"promotions":true,"email_notifications":true,"sms_notifications":true}}`
	if err := responseMismatch(req, 200, h, []byte(good)); err != nil {
		t.Fatalf("a correct body fails: %v", err)
	}
	for name, c := range map[string]struct {
		status int
		body   string
	}{
		"missing field":       {200, strings.Replace(good, `"theme":"light",`, "", 1)},
		"extra field":         {200, strings.Replace(good, `"theme":"light",`, `"theme":"light","pin":"1357",`, 1)},
		"wrong type":          {200, strings.Replace(good, `"daily_limit":null`, `"daily_limit":5`, 1)},
		"enum":                {200, strings.Replace(good, `"light"`, `"neon"`, 1)},
		"undocumented status": {418, good},
	} {
		if err := responseMismatch(req, c.status, h, []byte(c.body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestOpenAPIDocumentsEveryRoute: every route registered on the mux has an operation in the
// document, and the document has no operation the mux lacks.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	doc, _, err := loadAPIDoc()
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	err = env.server.router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := route.GetPathTemplate()
		if err != nil {
			return nil
		}
		methods, err := route.GetMethods()
		if err != nil {
			return nil
		}
		for _, m := range methods {
			if m == http.MethodHead || tpl == "/metrics" {
				continue // HEAD mirrors GET; /metrics is Prometheus', not the mobile API's
			}
			registered[m+" "+tpl] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for m := range item.Operations() {
			documented[strings.ToUpper(m)+" "+path] = true
		}
	}
	var missing, extra []string
	for k := range registered {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !registered[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("routes not in the OpenAPI document: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("documented operations without a route: %v", extra)
	}
}
