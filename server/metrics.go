package server

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
)

// NewRegistry returns the process's metric registry with the Go runtime, process and build-info
// collectors, each series labelled with the serving region.
func NewRegistry(region, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	r := RegionRegisterer(reg, region)
	r.MustRegister(
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsGC, collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		// wallet_build_info with the labels Prometheus' own exporters use (version, revision,
		// branch, goversion, goos, goarch, tags): revision and tags come from the binary's build
		// information, version from our -ldflags.
		versioncollector.NewCollector("wallet", versioncollector.WithExtraConstLabels(prometheus.Labels{"version": version})),
	)
	return reg
}

// RegionRegisterer wraps reg so every series registered through it carries region: the SREs
// watch every region in one Prometheus.
func RegionRegisterer(reg prometheus.Registerer, region string) prometheus.Registerer {
	return prometheus.WrapRegistererWith(prometheus.Labels{"region": region}, reg)
}

// Latency buckets: the OpenTelemetry HTTP semantic-convention list, with native histograms
// beside them (reference/ecosystem.md §2.2).
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

type httpMetrics struct {
	duration *prometheus.HistogramVec
	size     *prometheus.HistogramVec
	inFlight prometheus.Gauge
	ready    prometheus.Gauge
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "wallet_http_request_duration_seconds",
			Help:                            "Time to answer an HTTP request, by route template, method and status class.",
			Buckets:                         latencyBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"route", "method", "status_class"}),
		size: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wallet_http_response_size_bytes",
			Help:    "Size of response bodies, by route template, method and status class.",
			Buckets: prometheus.ExponentialBuckets(64, 4, 8),
		}, []string{"route", "method", "status_class"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wallet_http_requests_in_flight",
			Help: "Requests being served now.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wallet_ready",
			Help: "1 when the last readiness check passed (database answers, schema current), else 0.",
		}),
	}
	reg.MustRegister(m.duration, m.size, m.inFlight, m.ready)
	return m
}

// methods is the fixed set of method label values; anything else is "other".
var methods = map[string]bool{"GET": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "HEAD": true, "OPTIONS": true}

func (m *httpMetrics) observe(route, method string, status, bytes int, elapsed time.Duration) {
	if !methods[method] {
		method = "other"
	}
	class := strconv.Itoa(status/100) + "xx"
	m.duration.WithLabelValues(route, method, class).Observe(elapsed.Seconds())
	m.size.WithLabelValues(route, method, class).Observe(float64(bytes))
}
