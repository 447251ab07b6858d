package storage

import (
	"errors"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the data layer's Prometheus series. The region label is added by the registerer
// the caller passes (a constant label on every series of the process).
type metrics struct {
	txs     *prometheus.CounterVec // op, outcome
	retries *prometheus.CounterVec // op
	giveups *prometheus.CounterVec // op
	errors  *prometheus.CounterVec // sqlstate_class

	// The transfer batcher (transfers.go): items per batch, and runners started beside a running
	// one, by why (a stalled batch, or a full batch or more queued).
	batchSize    prometheus.Histogram
	extraRunners *prometheus.CounterVec // reason

	// PIN security signals, counted here because only VerifyPIN knows which failure set the
	// lock. No labels: the user is never a label value.
	pinFailures prometheus.Counter
	pinLockouts prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, pool *pgxpool.Pool) *metrics {
	m := &metrics{
		txs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wallet_db_tx_total",
			Help: "Database transactions by operation and outcome (committed or failed).",
		}, []string{"op", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wallet_db_tx_retries_total",
			Help: "Transaction re-runs after a serialization failure or deadlock, by operation.",
		}, []string{"op"}),
		giveups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wallet_db_tx_giveups_total",
			Help: "Transactions abandoned after reaching the retry bound, by operation.",
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wallet_db_errors_total",
			Help: "Statement errors returned by the database, by SQLSTATE class (first two characters).",
		}, []string{"sqlstate_class"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wallet_transfer_batch_size",
			Help:    "Transfers per database transaction of the PostgreSQL transfer batcher.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		}),
		extraRunners: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wallet_transfer_batch_extra_runners_total",
			Help: "Transfer batches started beside a running one, by reason: stalled (every running batch past its stall bound: lock waits) or queue (a full batch or more waiting).",
		}, []string{"reason"}),
		pinFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wallet_pin_failures_total",
			Help: "Wrong PINs entered (each checked attempt that did not match).",
		}),
		pinLockouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wallet_pin_lockouts_total",
			Help: "PIN lock-outs: wrong PINs that used up the last attempt and set the lock.",
		}),
	}
	for _, reason := range []string{"stalled", "queue"} {
		m.extraRunners.WithLabelValues(reason) // exported at 0 before the first
	}
	if reg != nil {
		reg.MustRegister(m.txs, m.retries, m.giveups, m.errors, m.batchSize, m.extraRunners, m.pinFailures, m.pinLockouts,
			newPoolCollector(pool))
	}
	return m
}

func (m *metrics) observeTx(op string, err error) {
	if errors.Is(err, errPINSlowPath) {
		return // not an outcome: the movement runs again after VerifyPIN
	}
	if err == nil {
		m.txs.WithLabelValues(op, "committed").Inc()
		return
	}
	m.txs.WithLabelValues(op, "failed").Inc()
	if state := sqlState(err); len(state) == 5 {
		m.errors.WithLabelValues(state[:2]).Inc()
	}
}

// poolCollector exposes pgxpool.Stat on every scrape. pgxpool has no Prometheus collector of
// its own, and the public ones do not follow the naming conventions
// (reference/ecosystem.md §2.5).
type poolCollector struct {
	pool *pgxpool.Pool

	acquired, idle, total, max                   *prometheus.Desc
	acquires, emptyAcquires, waitSeconds, cancel *prometheus.Desc
}

func newPoolCollector(pool *pgxpool.Pool) *poolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("wallet_db_pool_"+name, help, nil, nil)
	}
	return &poolCollector{
		pool:          pool,
		acquired:      d("acquired_connections", "Connections currently in use."),
		idle:          d("idle_connections", "Connections open and idle."),
		total:         d("total_connections", "Connections open, in use or idle."),
		max:           d("max_connections", "The pool's connection limit."),
		acquires:      d("acquires_total", "Successful connection acquisitions."),
		emptyAcquires: d("empty_acquires_total", "Acquisitions that had to wait because no connection was idle."),
		waitSeconds:   d("acquire_wait_seconds_total", "Total time spent acquiring connections."),
		cancel:        d("canceled_acquires_total", "Acquisitions canceled by their context."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.max, c.acquires, c.emptyAcquires, c.waitSeconds, c.cancel} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	g := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	n := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(c.acquired, float64(s.AcquiredConns()))
	g(c.idle, float64(s.IdleConns()))
	g(c.total, float64(s.TotalConns()))
	g(c.max, float64(s.MaxConns()))
	n(c.acquires, float64(s.AcquireCount()))
	n(c.emptyAcquires, float64(s.EmptyAcquireCount()))
	n(c.waitSeconds, s.AcquireDuration().Seconds())
	n(c.cancel, float64(s.CanceledAcquireCount()))
}
