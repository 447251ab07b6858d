package monitoring_test

import (
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

const dashboardFile = "dashboard.json"

// noBuildErrors unwraps the typed-nil cog.BuildErrors that the foundation
// SDK v0.0.22 returns from UnmarshalJSONStrict and Validate even on success
// (so err != nil is always true).
func noBuildErrors(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

func loadDashboard(t *testing.T) dashboard.Dashboard {
	t.Helper()
	plugins.RegisterDefaultPlugins()
	raw := readFile(t, dashboardFile)
	var d dashboard.Dashboard
	if err := noBuildErrors(d.UnmarshalJSONStrict(raw)); err != nil {
		t.Fatalf("strict decode of %s: %v", dashboardFile, err)
	}
	// The same typed-nil bites inside the SDK: PanelOrRowPanel's strict
	// decoder returns early on Panel's typed-nil "error", so every non-row
	// panel comes back empty (the checks ran and errors are reported, but the
	// decoded panel is dropped). Decode the panels again one by one.
	var top struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	d.Panels = nil
	for i, rp := range top.Panels {
		var kind struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(rp, &kind); err != nil {
			t.Fatal(err)
		}
		if kind.Type == "row" {
			var row dashboard.RowPanel
			if err := noBuildErrors(row.UnmarshalJSONStrict(rp)); err != nil {
				t.Fatalf("panels[%d]: %v", i, err)
			}
			d.Panels = append(d.Panels, dashboard.PanelOrRowPanel{RowPanel: &row})
			continue
		}
		var p dashboard.Panel
		if err := noBuildErrors(p.UnmarshalJSONStrict(rp)); err != nil {
			t.Fatalf("panels[%d]: %v", i, err)
		}
		// Targets are dropped the same way (StrictUnmarshalDataquery's
		// typed-nil error makes the loop `continue`): decode them as
		// Prometheus queries, strictly.
		var withTargets struct {
			Targets []json.RawMessage `json:"targets"`
		}
		if err := json.Unmarshal(rp, &withTargets); err != nil {
			t.Fatal(err)
		}
		p.Targets = nil
		for j, rt := range withTargets.Targets {
			q := &prometheus.Dataquery{}
			if err := noBuildErrors(q.UnmarshalJSONStrict(rt)); err != nil {
				t.Fatalf("panels[%d].targets[%d]: %v", i, j, err)
			}
			p.Targets = append(p.Targets, q)
		}
		d.Panels = append(d.Panels, dashboard.PanelOrRowPanel{Panel: &p})
	}
	if err := noBuildErrors(d.Validate()); err != nil {
		t.Fatalf("validate %s: %v", dashboardFile, err)
	}
	return d
}

// regionSentinel replaces $region in expressions so the checker can tell a
// selector filtered by the variable from one with a hard-coded regex.
const regionSentinel = "__REGION_VARIABLE__"

var (
	grafanaVar = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}?`)
	rangeSel   = regexp.MustCompile(`\[([^\]]*)\]`)
	legendRef  = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
)

// substitute replaces the Grafana variables Prometheus would never see with
// values it parses; an unknown variable (a typo such as $regoin) is an error.
func substitute(expr string) (string, error) {
	var bad []string
	out := grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		switch grafanaVar.FindStringSubmatch(m)[1] {
		case "__rate_interval", "__interval":
			return "1m"
		case "__range":
			return "1h"
		case "region":
			return regionSentinel
		}
		bad = append(bad, m)
		return m
	})
	if len(bad) > 0 {
		return "", errors.New("unknown Grafana variables " + strings.Join(bad, ", "))
	}
	return out, nil
}

// TestDashboard decodes dashboard.json strictly with the Grafana foundation
// SDK, checks its variables and layout, and parses and checks every panel
// query against the metrics contract.
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.Uid == nil || *d.Uid != "wallet-api" {
		t.Errorf("uid = %v, want wallet-api (links and provisioning depend on it)", d.Uid)
	}
	if d.Title == nil || *d.Title == "" {
		t.Error("dashboard has no title")
	}

	vars := map[string]dashboard.VariableModel{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if ds, ok := vars["datasource"]; !ok || ds.Type != dashboard.VariableTypeDatasource ||
		ds.Query == nil || ds.Query.String == nil || *ds.Query.String != "prometheus" {
		t.Error("want a datasource variable named datasource over prometheus data sources")
	}
	region, ok := vars["region"]
	switch {
	case !ok:
		t.Error("no region variable")
	case region.Type != dashboard.VariableTypeQuery || region.Query == nil || region.Query.String == nil ||
		*region.Query.String != "label_values(wallet_build_info, region)":
		t.Error("region variable must be the query label_values(wallet_build_info, region)")
	case region.Multi == nil || !*region.Multi || region.IncludeAll == nil || !*region.IncludeAll:
		t.Error("region variable must allow several values and All")
	case region.Datasource == nil || region.Datasource.Uid == nil || *region.Datasource.Uid != "${datasource}":
		t.Error("region variable must query the ${datasource} variable")
	}

	c := newExprChecker()
	c.regionMatcher = regionSentinel
	var rows []string
	ids := map[uint32]bool{}
	var boxes []dashboard.GridPos
	titles := map[string]bool{}
	queries := 0
	for _, pr := range d.Panels {
		if pr.RowPanel != nil {
			rows = append(rows, *pr.RowPanel.Title)
			if len(pr.RowPanel.Panels) > 0 {
				t.Errorf("row %q nests panels; keep rows expanded with panels at top level", *pr.RowPanel.Title)
			}
			if ids[pr.RowPanel.Id] {
				t.Errorf("duplicate panel id %d", pr.RowPanel.Id)
			}
			ids[pr.RowPanel.Id] = true
			boxes = append(boxes, *pr.RowPanel.GridPos)
			continue
		}
		p := pr.Panel
		title := ""
		if p.Title != nil {
			title = *p.Title
		}
		if title == "" || titles[title] {
			t.Errorf("panel title %q empty or duplicated", title)
		}
		titles[title] = true
		if p.Id == nil || ids[*p.Id] {
			t.Errorf("panel %q: missing or duplicate id", title)
		} else {
			ids[*p.Id] = true
		}
		if p.GridPos == nil {
			t.Errorf("panel %q: no gridPos", title)
		} else {
			boxes = append(boxes, *p.GridPos)
		}
		if p.Datasource == nil || p.Datasource.Uid == nil || *p.Datasource.Uid != "${datasource}" {
			t.Errorf("panel %q: datasource must be the ${datasource} variable, never a fixed uid", title)
		}
		if p.FieldConfig == nil || p.FieldConfig.Defaults.Unit == nil || *p.FieldConfig.Defaults.Unit == "" {
			t.Errorf("panel %q: no unit", title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no queries", title)
		}
		for _, target := range p.Targets {
			q, ok := target.(*prometheus.Dataquery)
			if !ok {
				t.Errorf("panel %q: target %T is not a Prometheus query", title, target)
				continue
			}
			queries++
			checkPanelQuery(t, c, title, q)
		}
	}
	if queries == 0 {
		t.Fatal("no Prometheus queries found")
	}
	wantRows := []string{"RED", "Business", "Database", "Security", "Runtime"}
	if len(rows) != len(wantRows) {
		t.Errorf("rows %q, want %d rows starting %q", rows, len(wantRows), wantRows)
	} else {
		for i, w := range wantRows {
			if !strings.HasPrefix(rows[i], w) {
				t.Errorf("row %d is %q, want it to start with %q", i, rows[i], w)
			}
		}
	}
	checkNoOverlap(t, boxes)

	// Every metric of the contract has a panel: an SRE should not have to
	// write a query by hand to see a signal the API exports.
	for name := range contract {
		if !c.used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
	// The region variable's own query reads wallet_build_info{region}.
	if !c.used["wallet_build_info"] || !slices.Contains(contract["wallet_build_info"].labels, "version") {
		t.Error("wallet_build_info must be in the contract for the region variable")
	}
}

func checkPanelQuery(t *testing.T, c *exprChecker, title string, q *prometheus.Dataquery) {
	t.Helper()
	if q.RefId == nil || *q.RefId == "" {
		t.Errorf("panel %q: query without refId", title)
	}
	if q.Datasource == nil || q.Datasource.Uid == nil || *q.Datasource.Uid != "${datasource}" {
		t.Errorf("panel %q: query datasource must be ${datasource}", title)
	}
	// Range windows come from Grafana so they follow the scrape interval
	// and zoom level; a literal [5m] would under-sample on wide ranges.
	for _, m := range rangeSel.FindAllStringSubmatch(q.Expr, -1) {
		if m[1] != "$__rate_interval" {
			t.Errorf("panel %q: range [%s], want [$__rate_interval]: %s", title, m[1], q.Expr)
		}
	}
	expr, err := substitute(q.Expr)
	if err != nil {
		t.Errorf("panel %q: %v", title, err)
		return
	}
	parsed, err := promqlParser.ParseExpr(expr)
	if err != nil {
		t.Errorf("panel %q: %v\n%s", title, err, q.Expr)
		return
	}
	ls, err := c.check(parsed)
	if err != nil {
		t.Errorf("panel %q: %v", title, err)
		return
	}
	if !ls["region"] {
		t.Errorf("panel %q: query result has no region label: %s", title, q.Expr)
	}
	if q.LegendFormat == nil {
		t.Errorf("panel %q: query without legendFormat", title)
		return
	}
	for _, m := range legendRef.FindAllStringSubmatch(*q.LegendFormat, -1) {
		if !ls[m[1]] {
			t.Errorf("panel %q: legend uses {{%s}}, the query carries only %s", title, m[1], ls)
		}
	}
}

func checkNoOverlap(t *testing.T, boxes []dashboard.GridPos) {
	t.Helper()
	for i, a := range boxes {
		if a.X+a.W > 24 || a.W <= 0 || a.H <= 0 {
			t.Errorf("gridPos %+v outside the 24-column grid", a)
		}
		for _, b := range boxes[i+1:] {
			if a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H {
				t.Errorf("panels overlap: %+v and %+v", a, b)
			}
		}
	}
}
