package monitoring_test

import "github.com/7awel/wallet/k8s/monitoring"

// The metrics contract itself is in contract.go (package monitoring), where
// the server's tests import it too. The dashboard and rule checks here read it
// through these unexported shapes.

type metricKind = monitoring.Kind

const (
	counter   = monitoring.Counter
	gauge     = monitoring.Gauge
	histogram = monitoring.Histogram
)

type contractMetric struct {
	kind   metricKind
	labels []string
	values map[string][]string
}

var targetLabels = monitoring.TargetLabels

var contract = func() map[string]contractMetric {
	c := make(map[string]contractMetric, len(monitoring.Contract))
	for name, m := range monitoring.Contract {
		c[name] = contractMetric{kind: m.Kind, labels: m.Labels, values: m.Values}
	}
	return c
}()
