package migrations

import (
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the CockroachDB overlay and golden files")

var (
	createTable = regexp.MustCompile(`(?is)CREATE TABLE (\w+) \((.*?)\n\);`)
	regionCol   = regexp.MustCompile(`(?m)^\s+region\s+crdb_internal_region NOT NULL`)
)

// sharedTables parses the shared set: table name → body.
func sharedTables(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	ups, err := fs.Glob(Shared(), "*.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range ups {
		b, err := fs.ReadFile(Shared(), name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range createTable.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = m[2]
		}
	}
	return out
}

func TestEveryTableDeclared(t *testing.T) {
	tables := sharedTables(t)
	if len(tables) < 20 {
		t.Fatalf("parsed only %d tables from the shared set", len(tables))
	}
	for name, body := range tables {
		decl, ok := Lookup(name)
		if !ok {
			t.Errorf("table %s is not declared in locality.go", name)
			continue
		}
		hasRegion := regionCol.MatchString(body)
		if decl.Locality == RegionalByRow && !hasRegion {
			t.Errorf("%s is REGIONAL BY ROW but has no `region crdb_internal_region NOT NULL` column", name)
		}
		if decl.Locality == Global && hasRegion {
			t.Errorf("%s is GLOBAL but has a region column: personal data must not be global", name)
		}
	}
	for _, d := range Tables {
		if _, ok := tables[d.Name]; !ok {
			t.Errorf("locality.go declares %s, which no migration creates", d.Name)
		}
	}
}

// TestNoRawPIIInIndexKeys: CockroachDB copies index keys into cluster-wide metadata, so PII may
// only be indexed through a blind index (reference/cockroachdb.md §2).
func TestNoRawPIIInIndexKeys(t *testing.T) {
	index := regexp.MustCompile(`(?i)CREATE (?:UNIQUE )?INDEX \w+\s+ON \w+ \(([^)]*)\)`)
	ups, _ := fs.Glob(Shared(), "*.up.sql")
	for _, name := range ups {
		b, _ := fs.ReadFile(Shared(), name)
		for _, m := range index.FindAllStringSubmatch(string(b), -1) {
			for _, col := range strings.Split(m[1], ",") {
				col = strings.Fields(strings.TrimSpace(col))[0]
				if strings.Contains(col, "phone") && !strings.HasSuffix(col, "_bidx") ||
					strings.Contains(col, "email") && !strings.HasSuffix(col, "_bidx") ||
					strings.HasSuffix(col, "_enc") {
					t.Errorf("%s: index on %s: raw PII in an index key", name, col)
				}
			}
		}
	}
}

// TestUniqueIndexesLeadWithRegion: on a REGIONAL BY ROW table a unique index that does not start
// with the region makes CockroachDB check every other region on each write
// (reference/cockroachdb.md §3). Primary keys are gen_random_uuid() defaults, which it skips.
func TestUniqueIndexesLeadWithRegion(t *testing.T) {
	unique := regexp.MustCompile(`(?i)CREATE UNIQUE INDEX \w+\s+ON (\w+) \(([^)]*)\)`)
	ups, _ := fs.Glob(Shared(), "*.up.sql")
	for _, name := range ups {
		b, _ := fs.ReadFile(Shared(), name)
		for _, m := range unique.FindAllStringSubmatch(string(b), -1) {
			decl, _ := Lookup(m[1])
			if decl.Locality == RegionalByRow && !strings.HasPrefix(strings.TrimSpace(m[2]), "region,") {
				t.Errorf("%s: unique index on %s (%s) does not lead with region", name, m[1], m[2])
			}
		}
	}
}

func TestSharedSetHasDownForEveryUp(t *testing.T) {
	ups, _ := fs.Glob(Shared(), "*.up.sql")
	downs, _ := fs.Glob(Shared(), "*.down.sql")
	if len(ups) == 0 || len(ups) != len(downs) {
		t.Fatalf("%d up files, %d down files", len(ups), len(downs))
	}
	for _, up := range ups {
		b, _ := fs.ReadFile(Shared(), up)
		if regexp.MustCompile(`(?im)^\s*(BEGIN|COMMIT)\s*;`).Match(b) {
			t.Errorf("%s: golang-migrate runs the file; no BEGIN/COMMIT in it", up)
		}
		// A file is all schema or all data (reference/cockroachdb.md §1.3).
		dml := regexp.MustCompile(`(?im)^\s*(INSERT|UPDATE|DELETE)\s`).Match(b)
		ddl := regexp.MustCompile(`(?im)^\s*(CREATE|ALTER|DROP)\s`).Match(b)
		if dml && ddl {
			t.Errorf("%s: data and schema never share a file", up)
		}
	}
}

// TestCockroachOverlay checks the generated overlay on disk: one statement per file, every table
// given its locality, and a golden summary of statements.
func TestCockroachOverlay(t *testing.T) {
	files := Overlay()
	dir := "cockroach"
	if *update {
		old, _ := filepath.Glob(filepath.Join(dir, "*.sql"))
		for _, f := range old {
			os.Remove(f)
		}
		for _, f := range files {
			up, down := f.Render()
			must(t, os.WriteFile(filepath.Join(dir, f.Name+".up.sql"), []byte(up), 0o644))
			must(t, os.WriteFile(filepath.Join(dir, f.Name+".down.sql"), []byte(down), 0o644))
		}
		// The embedded copy is the one built before these writes: the next run checks them.
	}
	onDisk, _ := fs.Glob(Cockroach(), "*.sql")
	if !*update && len(onDisk) != 2*len(files) {
		t.Fatalf("overlay on disk has %d files, generator has %d migrations; run go test ./migrations -update", len(onDisk), len(files))
	}
	var golden strings.Builder
	localities := map[string]string{}
	for _, f := range files {
		up, down := f.Render()
		for suffix, want := range map[string]string{".up.sql": up, ".down.sql": down} {
			got, err := fs.ReadFile(Cockroach(), f.Name+suffix)
			if !*update && (err != nil || string(got) != want) {
				t.Errorf("%s%s differs from the generator; run go test ./migrations -update", f.Name, suffix)
			}
		}
		stmts := SplitStatements(up)
		if len(stmts) != 1 {
			t.Errorf("%s.up.sql has %d statements, want exactly 1", f.Name, len(stmts))
		}
		for _, s := range stmts {
			golden.WriteString(f.Name + ": " + s + "\n")
			if m := regexp.MustCompile(`^ALTER TABLE (\w+) SET LOCALITY (.+);$`).FindStringSubmatch(s); m != nil {
				localities[m[1]] = m[2]
			}
		}
	}
	for _, d := range Tables {
		got := localities[d.Name]
		want := string(d.Locality)
		if d.Locality == RegionalByRow {
			want += " AS region"
		}
		if got != want {
			t.Errorf("overlay gives %s locality %q, want %q", d.Name, got, want)
		}
	}
	var names []string
	for n := range localities {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) != len(Tables) {
		t.Errorf("overlay names a locality for %d tables, schema has %d", len(names), len(Tables))
	}
	goldenFile := filepath.Join("testdata", "cockroach_overlay.golden")
	if *update {
		must(t, os.WriteFile(goldenFile, []byte(golden.String()), 0o644))
		return
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != golden.String() {
		t.Errorf("overlay statements differ from %s; run go test ./migrations -update and review the diff", goldenFile)
	}
}

func TestSplitStatements(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"SELECT 1;", []string{"SELECT 1;"}},
		{"-- c;\nSELECT 1; SELECT 2;\n", []string{"SELECT 1;", "SELECT 2;"}},
		{"SELECT ';'; SELECT $$a;b$$;", []string{"SELECT ';';", "SELECT $$a;b$$;"}},
		{"SELECT 'it''s;'; ", []string{"SELECT 'it''s;';"}},
		{"SELECT 1 /* ; */;", []string{"SELECT 1 /* ; */;"}},
		{"  \n-- only a comment\n", nil},
		{"SELECT 1", []string{"SELECT 1"}},
	}
	for _, tt := range tests {
		got := SplitStatements(tt.in)
		if strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("SplitStatements(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
