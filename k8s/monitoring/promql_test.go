package monitoring_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// This file holds a small static checker for the PromQL in rules.yml and
// dashboard.json. Parsing alone would accept `sum by (route)
// (wallet_db_tx_total)` or `rate(wallet_ready[5m])`; the checker also infers
// which labels each sub-expression carries, from the metrics contract, and
// rejects unknown metrics and labels, enum values outside the contract,
// counters read without rate()/increase(), aggregations that drop `region`,
// vector matches whose label sets cannot line up and absent(), which loses
// every label.

var promqlParser = parser.NewParser(parser.Options{})

type labelSet map[string]bool

func newLabelSet(names ...string) labelSet {
	s := labelSet{}
	for _, n := range names {
		s[n] = true
	}
	return s
}

func (s labelSet) clone() labelSet {
	c := labelSet{}
	for k := range s {
		c[k] = true
	}
	return c
}

func (s labelSet) without(names ...string) labelSet {
	c := s.clone()
	for _, n := range names {
		delete(c, n)
	}
	return c
}

func (s labelSet) equal(o labelSet) bool {
	if len(s) != len(o) {
		return false
	}
	for k := range s {
		if !o[k] {
			return false
		}
	}
	return true
}

func (s labelSet) String() string {
	names := make([]string, 0, len(s))
	for k := range s {
		names = append(names, k)
	}
	sort.Strings(names)
	return "{" + strings.Join(names, ",") + "}"
}

// exprChecker checks expressions against the contract. recorded maps the
// recording rules already defined to the labels their series carry.
type exprChecker struct {
	recorded map[string]labelSet
	// regionMatcher, when set, is the value every raw (non-recorded) selector
	// must match `region` against with =~; the dashboard uses it to make sure
	// every panel honours the $region variable.
	regionMatcher string
	// used collects the contract metrics the checked expressions read.
	used map[string]bool
}

func newExprChecker() *exprChecker {
	return &exprChecker{recorded: map[string]labelSet{}, used: map[string]bool{}}
}

// series resolves a selector's metric name: a contract metric, a histogram's
// _bucket/_count/_sum series or a recording rule. isCounter tells whether
// the series only makes sense under rate()/increase().
func (c *exprChecker) series(name string) (labels labelSet, m *contractMetric, isCounter bool, err error) {
	if ls, ok := c.recorded[name]; ok {
		return ls.clone(), nil, false, nil
	}
	base, suffix := name, ""
	if _, ok := contract[name]; !ok {
		for _, s := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(name, s); ok {
				if cm, ok := contract[b]; ok && cm.kind == histogram {
					base, suffix = b, s
				}
			}
		}
	}
	cm, ok := contract[base]
	if !ok || (cm.kind == histogram && suffix == "") {
		return nil, nil, false, fmt.Errorf("metric %q is neither in the metrics contract nor a recording rule defined above it", name)
	}
	c.used[base] = true
	labels = newLabelSet("region")
	for _, l := range cm.labels {
		labels[l] = true
	}
	for _, l := range targetLabels {
		labels[l] = true
	}
	if suffix == "_bucket" {
		labels["le"] = true
	}
	return labels, &cm, cm.kind == counter || cm.kind == histogram, nil
}

// check returns the labels carried by the result of e.
func (c *exprChecker) check(e parser.Expr) (labelSet, error) {
	return c.labels(e, false)
}

func (c *exprChecker) labels(e parser.Expr, underRate bool) (labelSet, error) {
	switch n := e.(type) {
	case *parser.NumberLiteral, *parser.StringLiteral:
		return labelSet{}, nil
	case *parser.ParenExpr:
		return c.labels(n.Expr, false)
	case *parser.UnaryExpr:
		return c.labels(n.Expr, false)
	case *parser.StepInvariantExpr:
		return c.labels(n.Expr, underRate)
	case *parser.SubqueryExpr:
		return c.labels(n.Expr, false)
	case *parser.MatrixSelector:
		return c.labels(n.VectorSelector, underRate)
	case *parser.VectorSelector:
		return c.selector(n, underRate)
	case *parser.Call:
		return c.call(n)
	case *parser.AggregateExpr:
		return c.aggregate(n)
	case *parser.BinaryExpr:
		return c.binary(n)
	default:
		return nil, fmt.Errorf("unsupported expression %T in %s", e, e)
	}
}

func (c *exprChecker) selector(n *parser.VectorSelector, underRate bool) (labelSet, error) {
	name := n.Name
	if name == "" {
		return nil, fmt.Errorf("selector %s has no metric name", n)
	}
	ls, cm, isCounter, err := c.series(name)
	if err != nil {
		return nil, err
	}
	if isCounter && !underRate {
		return nil, fmt.Errorf("%s is a counter (or histogram series): read it with rate() or increase()", name)
	}
	if !isCounter && underRate {
		return nil, fmt.Errorf("%s is not a counter: rate()/increase() over it is meaningless", name)
	}
	hasRegion := false
	for _, m := range n.LabelMatchers {
		if m.Name == "__name__" {
			continue
		}
		if !ls[m.Name] {
			return nil, fmt.Errorf("%s has no label %q (it has %s)", name, m.Name, ls)
		}
		if cm != nil && m.Type.String() == "=" {
			if allowed, ok := cm.values[m.Name]; ok && !slices.Contains(allowed, m.Value) {
				return nil, fmt.Errorf("%s{%s=%q}: value not in the contract %v", name, m.Name, m.Value, allowed)
			}
		}
		if m.Name == "region" && m.Type.String() == "=~" && m.Value == c.regionMatcher {
			hasRegion = true
		}
	}
	if c.regionMatcher != "" && cm != nil && !hasRegion {
		return nil, fmt.Errorf("selector %s does not filter on the $region variable", n)
	}
	return ls, nil
}

func (c *exprChecker) call(n *parser.Call) (labelSet, error) {
	switch n.Func.Name {
	case "rate", "irate", "increase":
		ms, ok := n.Args[0].(*parser.MatrixSelector)
		if !ok {
			return nil, fmt.Errorf("%s() over a subquery or expression: %s", n.Func.Name, n)
		}
		return c.labels(ms, true)
	case "absent", "absent_over_time":
		return nil, fmt.Errorf("%s drops every label, region included; use \"seen before, gone now\" with unless: %s", n.Func.Name, n)
	case "histogram_quantile":
		if _, ok := n.Args[0].(*parser.NumberLiteral); !ok {
			return nil, fmt.Errorf("histogram_quantile with a non-literal quantile: %s", n)
		}
		in, err := c.labels(n.Args[1], false)
		if err != nil {
			return nil, err
		}
		if !in["le"] {
			return nil, fmt.Errorf("histogram_quantile over series without `le` (aggregate with by (..., le)): %s", n)
		}
		return in.without("le"), nil
	case "label_replace":
		in, err := c.labels(n.Args[0], false)
		if err != nil {
			return nil, err
		}
		dst, ok := n.Args[1].(*parser.StringLiteral)
		if !ok {
			return nil, fmt.Errorf("label_replace with a computed destination: %s", n)
		}
		out := in.clone()
		out[dst.Val] = true
		return out, nil
	}
	var out labelSet
	for _, a := range n.Args {
		ls, err := c.labels(a, false)
		if err != nil {
			return nil, err
		}
		if out == nil && (a.Type() == parser.ValueTypeVector || a.Type() == parser.ValueTypeMatrix) {
			out = ls
		}
	}
	if out == nil {
		out = labelSet{}
	}
	return out, nil
}

func (c *exprChecker) aggregate(n *parser.AggregateExpr) (labelSet, error) {
	if n.Param != nil {
		if _, err := c.labels(n.Param, false); err != nil {
			return nil, err
		}
	}
	in, err := c.labels(n.Expr, false)
	if err != nil {
		return nil, err
	}
	for _, g := range n.Grouping {
		if !in[g] {
			return nil, fmt.Errorf("%s groups by %q, which its input does not carry (input has %s)", n, g, in)
		}
	}
	op := n.Op.String()
	switch {
	case n.Without && slices.Contains(n.Grouping, "region"):
		return nil, fmt.Errorf("aggregation drops the region label: %s", n)
	case !n.Without && !slices.Contains(n.Grouping, "region"):
		return nil, fmt.Errorf("aggregation must keep region (by (region, ...)): %s", n)
	}
	switch op {
	case "topk", "bottomk", "limitk", "limit_ratio":
		return in, nil
	case "count_values":
		lbl, ok := n.Param.(*parser.StringLiteral)
		if !ok {
			return nil, fmt.Errorf("count_values with a computed label: %s", n)
		}
		out := newLabelSet(n.Grouping...)
		out[lbl.Val] = true
		return out, nil
	}
	if n.Without {
		return in.without(n.Grouping...), nil
	}
	return newLabelSet(n.Grouping...), nil
}

func (c *exprChecker) binary(n *parser.BinaryExpr) (labelSet, error) {
	l, err := c.labels(n.LHS, false)
	if err != nil {
		return nil, err
	}
	r, err := c.labels(n.RHS, false)
	if err != nil {
		return nil, err
	}
	lv := n.LHS.Type() == parser.ValueTypeVector
	rv := n.RHS.Type() == parser.ValueTypeVector
	switch {
	case !lv && !rv:
		return labelSet{}, nil
	case !lv:
		return r, nil
	case !rv:
		return l, nil
	}
	vm := n.VectorMatching
	if vm == nil {
		return nil, fmt.Errorf("vector/vector operation without matching: %s", n)
	}
	if vm.On {
		for _, m := range vm.MatchingLabels {
			if !l[m] || !r[m] {
				return nil, fmt.Errorf("on(%s): label %q missing on one side (%s vs %s) in %s",
					strings.Join(vm.MatchingLabels, ","), m, l, r, n)
			}
		}
	} else if n.Op != parser.LOR && (vm.Card == parser.CardOneToOne || vm.Card == parser.CardManyToMany) &&
		!l.without(vm.MatchingLabels...).equal(r.without(vm.MatchingLabels...)) {
		// Without on(...), series match on all their labels (less those in
		// ignoring(...)): two sides with different label sets never match and
		// the result is always empty.
		return nil, fmt.Errorf("label sets %s and %s cannot match without on(...): %s", l, r, n)
	}
	switch {
	case n.Op == parser.LAND || n.Op == parser.LUNLESS:
		return l, nil
	case n.Op == parser.LOR:
		out := labelSet{}
		for k := range l {
			if r[k] {
				out[k] = true
			}
		}
		return out, nil
	case vm.Card == parser.CardManyToOne:
		return addAll(l, vm.Include), nil
	case vm.Card == parser.CardOneToMany:
		return addAll(r, vm.Include), nil
	case n.Op.IsComparisonOperator() && !n.ReturnBool:
		return l, nil // a filter returns the left-hand series unchanged
	case vm.On:
		return newLabelSet(vm.MatchingLabels...), nil
	default:
		return l.without(vm.MatchingLabels...), nil
	}
}

func addAll(s labelSet, names []string) labelSet {
	out := s.clone()
	for _, n := range names {
		out[n] = true
	}
	return out
}
