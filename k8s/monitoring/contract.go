package monitoring

// The metrics contract between the API server and the dashboard and rules in
// this directory. Every series the dashboard or a rule reads must be listed
// here with its labels, so a typo in a panel or an alert fails a test instead
// of drawing an empty graph or never firing. It lives in a non-test file so
// the server's tests can import it and check the real /metrics output
// against the same list (server/contract_test.go): neither side can drift.

// Kind is a metric's Prometheus type.
type Kind string

// The kinds the contract uses.
const (
	Counter   Kind = "counter"
	Gauge     Kind = "gauge"
	Histogram Kind = "histogram"
)

// Metric is one contract entry.
type Metric struct {
	Kind Kind
	// Labels the metric carries besides `region` (present on every series).
	Labels []string
	// Values lists the allowed values of enumerated labels; a matcher with
	// another value is a typo.
	Values map[string][]string
}

// TargetLabels are attached by Prometheus to every scraped series (the
// Prometheus Operator adds pod, namespace, service, container and endpoint
// too); rules and panels may group by them.
var TargetLabels = []string{"instance", "job", "pod", "namespace", "service", "container", "endpoint"}

var (
	httpLabels = []string{"route", "method", "status_class"}
	httpValues = map[string][]string{"status_class": {"1xx", "2xx", "3xx", "4xx", "5xx"}}
)

// Contract maps each metric name to what the server must expose.
var Contract = map[string]Metric{
	// HTTP
	"wallet_http_request_duration_seconds": {Kind: Histogram, Labels: httpLabels, Values: httpValues},
	"wallet_http_requests_in_flight":       {Kind: Gauge},
	"wallet_http_response_size_bytes":      {Kind: Histogram, Labels: httpLabels, Values: httpValues},

	// DB pool (our collector over pgxpool.Stat)
	"wallet_db_pool_acquired_connections":       {Kind: Gauge},
	"wallet_db_pool_idle_connections":           {Kind: Gauge},
	"wallet_db_pool_total_connections":          {Kind: Gauge},
	"wallet_db_pool_max_connections":            {Kind: Gauge},
	"wallet_db_pool_acquires_total":             {Kind: Counter},
	"wallet_db_pool_empty_acquires_total":       {Kind: Counter},
	"wallet_db_pool_acquire_wait_seconds_total": {Kind: Counter},
	"wallet_db_pool_canceled_acquires_total":    {Kind: Counter},

	// DB transactions and errors
	"wallet_db_tx_total": {Kind: Counter, Labels: []string{"op", "outcome"},
		Values: map[string][]string{"outcome": {"committed", "failed"}}},
	"wallet_db_tx_retries_total": {Kind: Counter, Labels: []string{"op"}},
	"wallet_db_tx_giveups_total": {Kind: Counter, Labels: []string{"op"}},
	"wallet_db_errors_total":     {Kind: Counter, Labels: []string{"sqlstate_class"}},
	// The PostgreSQL transfer batcher.
	"wallet_transfer_batch_size": {Kind: Histogram},
	"wallet_transfer_batch_extra_runners_total": {Kind: Counter, Labels: []string{"reason"},
		Values: map[string][]string{"reason": {"stalled", "queue"}}},

	// Business
	"wallet_money_movements_total": {Kind: Counter, Labels: []string{"type", "outcome", "reason"},
		Values: map[string][]string{
			"type":    {"transfer", "payment", "cash_out", "cash_in", "exchange", "cash_out_collect", "cash_out_cancel"},
			"outcome": {"committed", "replayed", "refused", "error"},
		}},
	"wallet_otp_sends_total": {Kind: Counter, Labels: []string{"purpose", "outcome"},
		Values: map[string][]string{"outcome": {"sent", "rate_limited", "failed"}}},
	"wallet_otp_verifications_total": {Kind: Counter, Labels: []string{"purpose", "outcome"},
		Values: map[string][]string{"outcome": {"ok", "invalid", "expired", "locked"}}},
	"wallet_pin_failures_total":        {Kind: Counter},
	"wallet_pin_lockouts_total":        {Kind: Counter},
	"wallet_refresh_token_reuse_total": {Kind: Counter},
	"wallet_sessions_created_total":    {Kind: Counter},
	"wallet_ready":                     {Kind: Gauge},
	"wallet_build_info":                {Kind: Gauge, Labels: []string{"version", "revision", "branch", "goversion", "goos", "goarch", "tags"}},

	// Standard collectors (client_golang collectors.NewGoCollector and
	// NewProcessCollector), registered through the same region-labelled
	// registerer. Only the series the dashboard reads are listed.
	"go_goroutines":                 {Kind: Gauge},
	"go_memstats_heap_alloc_bytes":  {Kind: Gauge},
	"go_memstats_heap_inuse_bytes":  {Kind: Gauge},
	"process_resident_memory_bytes": {Kind: Gauge},
	"process_cpu_seconds_total":     {Kind: Counter},
}
