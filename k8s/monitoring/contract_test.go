package monitoring_test

// The metrics contract between the API server and the dashboard and rules in
// this directory. Every series the dashboard or a rule reads must be listed
// here with its labels, so a typo in a panel or an alert fails a test instead
// of drawing an empty graph or never firing. The server's own tests should
// check its real /metrics output against the same list.

type metricKind string

const (
	counter   metricKind = "counter"
	gauge     metricKind = "gauge"
	histogram metricKind = "histogram"
)

type contractMetric struct {
	kind metricKind
	// labels the metric carries besides `region` (present on every series).
	labels []string
	// values lists the allowed values of enumerated labels; a matcher with
	// another value is a typo.
	values map[string][]string
}

// targetLabels are attached by Prometheus to every scraped series (the
// Prometheus Operator adds pod, namespace, service, container and endpoint
// too); rules and panels may group by them.
var targetLabels = []string{"instance", "job", "pod", "namespace", "service", "container", "endpoint"}

var (
	httpLabels = []string{"route", "method", "status_class"}
	httpValues = map[string][]string{"status_class": {"1xx", "2xx", "3xx", "4xx", "5xx"}}
)

var contract = map[string]contractMetric{
	// HTTP
	"wallet_http_request_duration_seconds": {kind: histogram, labels: httpLabels, values: httpValues},
	"wallet_http_requests_in_flight":       {kind: gauge},
	"wallet_http_response_size_bytes":      {kind: histogram, labels: httpLabels, values: httpValues},

	// DB pool (our collector over pgxpool.Stat)
	"wallet_db_pool_acquired_connections":       {kind: gauge},
	"wallet_db_pool_idle_connections":           {kind: gauge},
	"wallet_db_pool_total_connections":          {kind: gauge},
	"wallet_db_pool_max_connections":            {kind: gauge},
	"wallet_db_pool_acquires_total":             {kind: counter},
	"wallet_db_pool_empty_acquires_total":       {kind: counter},
	"wallet_db_pool_acquire_wait_seconds_total": {kind: counter},
	"wallet_db_pool_canceled_acquires_total":    {kind: counter},

	// DB transactions and errors
	"wallet_db_tx_total": {kind: counter, labels: []string{"op", "outcome"},
		values: map[string][]string{"outcome": {"committed", "failed"}}},
	"wallet_db_tx_retries_total": {kind: counter, labels: []string{"op"}},
	"wallet_db_tx_giveups_total": {kind: counter, labels: []string{"op"}},
	"wallet_db_errors_total":     {kind: counter, labels: []string{"sqlstate_class"}},

	// Business
	"wallet_money_movements_total": {kind: counter, labels: []string{"type", "outcome", "reason"},
		values: map[string][]string{
			"type":    {"transfer", "payment", "cash_out", "cash_in", "exchange", "cash_out_collect", "cash_out_cancel"},
			"outcome": {"committed", "replayed", "refused", "error"},
		}},
	"wallet_otp_sends_total": {kind: counter, labels: []string{"purpose", "outcome"},
		values: map[string][]string{"outcome": {"sent", "rate_limited", "failed"}}},
	"wallet_otp_verifications_total": {kind: counter, labels: []string{"purpose", "outcome"},
		values: map[string][]string{"outcome": {"ok", "invalid", "expired", "locked"}}},
	"wallet_pin_failures_total":        {kind: counter},
	"wallet_pin_lockouts_total":        {kind: counter},
	"wallet_refresh_token_reuse_total": {kind: counter},
	"wallet_sessions_created_total":    {kind: counter},
	"wallet_ready":                     {kind: gauge},
	"wallet_build_info":                {kind: gauge, labels: []string{"version", "revision", "branch", "goversion", "goos", "goarch", "tags"}},

	// Standard collectors (client_golang collectors.NewGoCollector and
	// NewProcessCollector), registered through the same region-labelled
	// registerer. Only the series the dashboard reads are listed.
	"go_goroutines":                 {kind: gauge},
	"go_memstats_heap_alloc_bytes":  {kind: gauge},
	"go_memstats_heap_inuse_bytes":  {kind: gauge},
	"process_resident_memory_bytes": {kind: gauge},
	"process_cpu_seconds_total":     {kind: counter},
}
