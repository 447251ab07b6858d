package k6run

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/7awel/wallet/loadtest/scenarios"
)

// Metric is every sample of one metric, kept whole so tests can ask anything of them.
type Metric struct {
	Name, Type string // Type is counter, gauge, rate or trend
	IsTime     bool
	Samples    []Sample
}

// Sample is one recorded value and the tags it carried.
type Sample struct {
	Value float64
	Tags  map[string]string
}

var metricNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]{0,127}$`)

type registry struct {
	mu sync.Mutex
	m  map[string]*Metric
}

func newRegistry() *registry { return &registry{m: map[string]*Metric{}} }

// define registers a custom metric; redefining one with another type is an error, as in k6.
func (r *registry) define(name, typ string, isTime bool) error {
	if bt := scenarios.BuiltinMetricType(name); bt != "" && bt != typ {
		return fmt.Errorf("metric %s is built in as a %s, cannot redefine it as a %s", name, bt, typ)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.m[name]; ok {
		if m.Type != typ {
			return fmt.Errorf("metric %s already exists as a %s, cannot redefine it as a %s", name, m.Type, typ)
		}
		return nil
	}
	r.m[name] = &Metric{Name: name, Type: typ, IsTime: isTime}
	return nil
}

func (r *registry) typeOf(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.m[name]; ok {
		return m.Type
	}
	return ""
}

func (r *registry) add(name, typ string, isTime bool, value float64, tags map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.m[name]
	if !ok {
		m = &Metric{Name: name, Type: typ, IsTime: isTime}
		r.m[name] = m
	}
	m.Samples = append(m.Samples, Sample{Value: value, Tags: tags})
}

func (r *registry) snapshot() map[string]*Metric {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]*Metric, len(r.m))
	for k, m := range r.m {
		c := *m
		c.Samples = append([]Sample(nil), m.Samples...)
		out[k] = &c
	}
	return out
}

// Values are the samples' values whose tags include every filter tag.
func (m *Metric) Values(filter map[string]string) []float64 {
	var out []float64
	for _, s := range m.Samples {
		ok := true
		for k, v := range filter {
			if s.Tags[k] != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, s.Value)
		}
	}
	return out
}

// Sum adds the matching values: a Counter's count.
func (m *Metric) Sum(filter map[string]string) float64 {
	total := 0.0
	for _, v := range m.Values(filter) {
		total += v
	}
	return total
}

func (r *registry) aggregate(name string, filter map[string]string, agg string, pct float64, elapsed time.Duration) (float64, bool) {
	r.mu.Lock()
	m, ok := r.m[name]
	var vals []float64
	if ok {
		vals = m.Values(filter)
	}
	r.mu.Unlock()
	if !ok {
		// k6 evaluates counters with no samples as zero.
		if agg == "count" {
			return 0, true
		}
		return 0, false
	}
	return aggregate(vals, agg, pct, elapsed)
}

// aggregate computes one k6 aggregation of values; ok is false when there is nothing to
// aggregate.
func aggregate(vals []float64, agg string, pct float64, elapsed time.Duration) (float64, bool) {
	if agg == "count" {
		total := 0.0
		for _, v := range vals {
			total += v
		}
		return total, true
	}
	if len(vals) == 0 {
		return 0, false
	}
	sorted := append([]float64(nil), vals...)
	sort.Float64s(sorted)
	switch agg {
	case "rate":
		// A Rate's rate is the share of non-zero samples; a Counter's is per second, but
		// only Rate thresholds use it here.
		nz := 0
		for _, v := range vals {
			if v != 0 {
				nz++
			}
		}
		return float64(nz) / float64(len(vals)), true
	case "value":
		return vals[len(vals)-1], true
	case "min":
		return sorted[0], true
	case "max":
		return sorted[len(sorted)-1], true
	case "avg":
		total := 0.0
		for _, v := range vals {
			total += v
		}
		return total / float64(len(vals)), true
	case "med":
		return percentile(sorted, 50), true
	case "p":
		return percentile(sorted, pct), true
	}
	return math.NaN(), false
}

// percentile interpolates linearly between the closest ranks, as k6 does.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 1 {
		return sorted[0]
	}
	rank := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(rank))
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	return sorted[lo] + (rank-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// summaryMetrics builds handleSummary's data.metrics the way k6 shapes it: one entry per
// metric and one per thresholded sub-metric (`name{tag:value}`), each with its thresholds.
func summaryMetrics(ms map[string]*Metric, elapsed time.Duration, ths []parsedThreshold, results []ThresholdResult, trendStats []string) map[string]any {
	out := map[string]any{}
	secs := elapsed.Seconds()
	if secs <= 0 {
		secs = 1e-9
	}
	entry := func(m *Metric, filter map[string]string) map[string]any {
		vals := m.Values(filter)
		values := map[string]any{}
		switch m.Type {
		case "counter":
			sum, _ := aggregate(vals, "count", 0, elapsed)
			values["count"] = sum
			values["rate"] = sum / secs
		case "gauge":
			if len(vals) > 0 {
				values["value"] = vals[len(vals)-1]
				values["min"], _ = aggregate(vals, "min", 0, elapsed)
				values["max"], _ = aggregate(vals, "max", 0, elapsed)
			}
		case "rate":
			rate, _ := aggregate(vals, "rate", 0, elapsed)
			passes := 0
			for _, v := range vals {
				if v != 0 {
					passes++
				}
			}
			values["rate"] = rate
			values["passes"] = passes
			values["fails"] = len(vals) - passes
		case "trend":
			for _, stat := range trendStats {
				if stat == "count" { // of a Trend: how many samples, not their sum
					values[stat] = len(vals)
					continue
				}
				th, err := scenarios.ParseThreshold(m.Name, stat+"<0")
				if err != nil {
					continue
				}
				v, _ := aggregate(vals, th.Agg, th.Percentile, elapsed)
				values[stat] = v
			}
		}
		e := map[string]any{"type": m.Type, "contains": "default", "values": values}
		if m.IsTime {
			e["contains"] = "time"
		}
		return e
	}
	for name, m := range ms {
		out[name] = entry(m, nil)
	}
	for i, p := range ths {
		m, ok := ms[p.th.Metric]
		if !ok {
			// A threshold on a metric nothing recorded: k6 still lists it, empty.
			m = &Metric{Name: p.th.Metric, Type: scenarios.BuiltinMetricType(p.th.Metric)}
		}
		e, ok := out[p.key].(map[string]any)
		if !ok {
			e = entry(m, p.th.Tags)
			out[p.key] = e
		}
		th, _ := e["thresholds"].(map[string]any)
		if th == nil {
			th = map[string]any{}
			e["thresholds"] = th
		}
		th[results[i].Expr] = map[string]any{"ok": results[i].OK}
	}
	return out
}
