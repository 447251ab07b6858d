// Package localityaudit proves that every statement on a REGIONAL BY ROW table pins its region
// column: a value on INSERT, a predicate on SELECT, UPDATE and DELETE. On CockroachDB a
// statement that does not is a fan-out to every region (design.md, Regions and PII).
//
// A Recorder is a pgx tracer that keeps the text of every statement a test suite sends; Check
// parses each with PostgreSQL's own parser (pg_query, cgo) and lists the offenders. The tables
// and the allowed exceptions come from migrations (locality.go), the same declarations the
// CockroachDB overlay is generated from. It is for tests: the service binary never imports it.
package localityaudit

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/7awel/wallet/migrations"
)

// Recorder records distinct statement texts. It implements pgx.QueryTracer and pgx.BatchTracer.
type Recorder struct {
	mu    sync.Mutex
	stmts map[string]int
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{stmts: map[string]int{}} }

func (r *Recorder) record(sql string) {
	r.mu.Lock()
	r.stmts[sql]++
	r.mu.Unlock()
}

func (r *Recorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	r.record(data.SQL)
	return ctx
}

func (r *Recorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *Recorder) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (r *Recorder) TraceBatchQuery(_ context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	r.record(data.SQL)
}

func (r *Recorder) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// Statements returns the recorded statements, sorted.
func (r *Recorder) Statements() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.stmts))
	for s := range r.stmts {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Offender is a statement that touches a regional table without pinning its region.
type Offender struct {
	Table     string
	Statement string
}

func (o Offender) String() string {
	return fmt.Sprintf("%s: %s", o.Table, strings.Join(strings.Fields(o.Statement), " "))
}

// Report is the result of Check.
type Report struct {
	Offenders []Offender
	// Touched: regional tables seen in statements, pinned or not: the audit's coverage.
	Touched map[string]bool
	// Excepted: statements skipped through a declared exception, by key.
	Excepted map[string]int
	// UnknownExceptions: exception keys used in SQL but not declared in migrations.
	UnknownExceptions []string
	// Unparsed: statements the parser refused (reported, never silently passed).
	Unparsed []string
}

// exceptionTag marks a statement that may skip the region pin, naming a declared exception:
// /* locality-exception: key */.
var exceptionTag = regexp.MustCompile(`/\*\s*locality-exception:\s*([a-z0-9_]+)\s*\*/`)

// Check audits statements. A statement on a regional table passes when every reference to a
// regional table in it is pinned, or when it carries a tag of a declared exception (callers pass
// migrations.LocalityExceptions).
func Check(statements []string, exceptions map[string]string) Report {
	regional := map[string]bool{}
	for _, t := range migrations.RegionalTables() {
		regional[t] = true
	}
	rep := Report{Touched: map[string]bool{}, Excepted: map[string]int{}}
	unknown := map[string]bool{}
	for _, sql := range statements {
		if m := exceptionTag.FindStringSubmatch(sql); m != nil {
			if _, ok := exceptions[m[1]]; ok {
				rep.Excepted[m[1]]++
			} else {
				unknown[m[1]] = true
			}
			continue
		}
		raw, err := pg_query.ParseToJSON(sql)
		if err != nil {
			rep.Unparsed = append(rep.Unparsed, sql)
			continue
		}
		var tree any
		if err := json.Unmarshal([]byte(raw), &tree); err != nil {
			rep.Unparsed = append(rep.Unparsed, sql)
			continue
		}
		for _, table := range unpinned(tree, regional, rep.Touched) {
			rep.Offenders = append(rep.Offenders, Offender{Table: table, Statement: sql})
		}
	}
	for k := range unknown {
		rep.UnknownExceptions = append(rep.UnknownExceptions, k)
	}
	sort.Strings(rep.UnknownExceptions)
	return rep
}

// scope is one query level: the tables it reads or writes and the region columns its
// predicates pin.
type scope struct {
	tables []rangeVar          // regional tables referenced at this level
	pinned map[string]bool     // qualifier ("" for unqualified) whose region is pinned
	links  [][2]string         // a.region = b.region: pinning one pins the other
	insert map[string]bool     // INSERT target alias → has region in its column list
	all    map[string]rangeVar // every table at this level by alias
}

type rangeVar struct{ name, alias string }

// unpinned walks a parse tree and returns the regional tables referenced without a pin.
func unpinned(node any, regional, touched map[string]bool) []string {
	var out []string
	var walk func(n any)
	walk = func(n any) {
		switch v := n.(type) {
		case map[string]any:
			for kind, body := range v {
				if b, ok := body.(map[string]any); ok {
					switch kind {
					case "SelectStmt", "UpdateStmt", "DeleteStmt", "InsertStmt":
						out = append(out, checkScope(kind, b, regional, touched)...)
					}
				}
			}
			for _, child := range v {
				walk(child)
			}
		case []any:
			for _, child := range v {
				walk(child)
			}
		}
	}
	walk(node)
	return out
}

func checkScope(kind string, stmt map[string]any, regional, touched map[string]bool) []string {
	s := &scope{pinned: map[string]bool{}, insert: map[string]bool{}, all: map[string]rangeVar{}}
	addRel := func(rv map[string]any) {
		name, _ := rv["relname"].(string)
		alias := name
		if a, ok := rv["alias"].(map[string]any); ok {
			if an, ok := a["aliasname"].(string); ok {
				alias = an
			}
		}
		r := rangeVar{name: name, alias: alias}
		s.all[alias] = r
		if regional[name] {
			touched[name] = true
			s.tables = append(s.tables, r)
		}
	}
	var fromItems func(n any)
	fromItems = func(n any) {
		switch v := n.(type) {
		case []any:
			for _, c := range v {
				fromItems(c)
			}
		case map[string]any:
			if rv, ok := v["RangeVar"].(map[string]any); ok {
				addRel(rv)
			}
			if j, ok := v["JoinExpr"].(map[string]any); ok {
				fromItems(j["larg"])
				fromItems(j["rarg"])
				collectPins(j["quals"], s)
			}
			// RangeSubselect and functions are separate scopes, walked on their own.
		}
	}
	switch kind {
	case "SelectStmt":
		fromItems(stmt["fromClause"])
	case "UpdateStmt":
		if rv, ok := stmt["relation"].(map[string]any); ok {
			addRel(rv)
		}
		fromItems(stmt["fromClause"])
	case "DeleteStmt":
		if rv, ok := stmt["relation"].(map[string]any); ok {
			addRel(rv)
		}
		fromItems(stmt["usingClause"])
	case "InsertStmt":
		if rv, ok := stmt["relation"].(map[string]any); ok {
			addRel(rv)
			alias := s.tables
			if len(alias) > 0 {
				for _, c := range asList(stmt["cols"]) {
					if rt, ok := c.(map[string]any)["ResTarget"].(map[string]any); ok && rt["name"] == migrations.RegionColumn {
						s.pinned[alias[len(alias)-1].alias] = true
					}
				}
			}
		}
	}
	collectPins(stmt["whereClause"], s)

	// Propagate pins through region = region links until nothing changes.
	for changed := true; changed; {
		changed = false
		for _, l := range s.links {
			a, b := s.qualified(l[0]), s.qualified(l[1])
			if s.pinned[a] != s.pinned[b] {
				s.pinned[a], s.pinned[b] = true, true
				changed = true
			}
		}
	}
	var out []string
	for _, t := range s.tables {
		if s.pinned[t.alias] || (s.pinned[""] && s.onlyRegionalAlias() == t.alias) {
			continue
		}
		out = append(out, t.name)
	}
	return out
}

// qualified resolves an unqualified region reference to the scope's only regional table.
func (s *scope) qualified(q string) string {
	if q == "" {
		return s.onlyRegionalAlias()
	}
	return q
}

func (s *scope) onlyRegionalAlias() string {
	if len(s.tables) == 1 {
		return s.tables[0].alias
	}
	return ""
}

// collectPins finds, under AND only, predicates that fix a region column: region = x,
// region IN (…), region = ANY(…). A pin under OR or NOT does not count.
func collectPins(n any, s *scope) {
	m, ok := n.(map[string]any)
	if !ok {
		return
	}
	if b, ok := m["BoolExpr"].(map[string]any); ok {
		if b["boolop"] == "AND_EXPR" {
			for _, a := range asList(b["args"]) {
				collectPins(a, s)
			}
		}
		return
	}
	e, ok := m["A_Expr"].(map[string]any)
	if !ok {
		return
	}
	kind, _ := e["kind"].(string)
	op := ""
	for _, n := range asList(e["name"]) {
		if str, ok := n.(map[string]any)["String"].(map[string]any); ok {
			op, _ = str["sval"].(string)
		}
	}
	if !(kind == "AEXPR_OP" && op == "=" || kind == "AEXPR_IN" || kind == "AEXPR_OP_ANY" && op == "=") {
		return
	}
	lq, lok := regionRef(e["lexpr"])
	rq, rok := regionRef(e["rexpr"])
	switch {
	case lok && rok:
		s.links = append(s.links, [2]string{lq, rq})
	case lok:
		s.pinned[lq] = true
	case rok:
		s.pinned[rq] = true
	}
}

// regionRef reports whether n is a reference to a region column, and its qualifier.
func regionRef(n any) (string, bool) {
	m, ok := n.(map[string]any)
	if !ok {
		return "", false
	}
	c, ok := m["ColumnRef"].(map[string]any)
	if !ok {
		return "", false
	}
	var parts []string
	for _, f := range asList(c["fields"]) {
		if str, ok := f.(map[string]any)["String"].(map[string]any); ok {
			sv, _ := str["sval"].(string)
			parts = append(parts, sv)
		}
	}
	if len(parts) == 0 || parts[len(parts)-1] != migrations.RegionColumn {
		return "", false
	}
	if len(parts) >= 2 {
		return parts[len(parts)-2], true
	}
	return "", true
}

func asList(n any) []any {
	l, _ := n.([]any)
	return l
}
