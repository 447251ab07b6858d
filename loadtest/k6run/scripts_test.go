package k6run

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/7awel/wallet/loadtest/scenarios"
)

// TestRepoScriptsLoad evaluates the init context of every k6 script in loadtest/k6 for every
// scenario it runs, without a server: the script must bundle, read scenarios.json, and
// export exactly the scenario, load and thresholds defined there, with every threshold on a
// metric the script creates. The run against a real server is the end-to-end test's job.
func TestRepoScriptsLoad(t *testing.T) {
	f, err := scenarios.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range f.Names() {
		t.Run(name, func(t *testing.T) {
			def := f.Scenarios[name]
			s, err := ScenarioScript(filepath.Join("..", "k6"), name, map[string]string{"BASE_URL": "http://127.0.0.1:1"})
			if err != nil {
				t.Fatal(err)
			}
			res, err := Inspect(s)
			if err != nil {
				t.Fatal(err)
			}
			scs, _ := res.Options["scenarios"].(map[string]any)
			if len(scs) != 1 || scs[name] == nil {
				t.Fatalf("options.scenarios = %v, want only %s", scs, name)
			}
			got := scs[name].(map[string]any)
			// The scenario is the load of scenarios.json plus exec, tags and gracefulStop.
			var load map[string]any
			b, _ := json.Marshal(def.Load)
			_ = json.Unmarshal(b, &load)
			for k, v := range load {
				if !reflect.DeepEqual(got[k], v) {
					t.Errorf("scenario %s = %v, scenarios.json says %v", k, got[k], v)
				}
			}
			tags, _ := got["tags"].(map[string]any)
			for k, v := range def.Tags {
				if tags[k] != v {
					t.Errorf("tag %s = %v, want %s", k, tags[k], v)
				}
			}
			var want map[string]any
			b, _ = json.Marshal(def.Thresholds)
			_ = json.Unmarshal(b, &want)
			if !reflect.DeepEqual(res.Options["thresholds"], want) {
				t.Errorf("thresholds = %v\nscenarios.json says %v", res.Options["thresholds"], want)
			}
			if res.Options["setupTimeout"] == nil {
				t.Error("no setupTimeout: k6's 60 s default is too short to sign hundreds of users up")
			}
		})
	}
}

// TestScriptsFollowTheRules scans the scripts for what would break under real k6 or here.
func TestScriptsFollowTheRules(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "k6", "*.js"))
	if err != nil {
		t.Fatal(err)
	}
	libs, _ := filepath.Glob(filepath.Join("..", "k6", "lib", "*.js"))
	files = append(files, libs...)
	if len(files) < 7 {
		t.Fatalf("found only %v", files)
	}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		if !strings.HasPrefix(src, "// @ts-check") {
			t.Errorf("%s: does not start with // @ts-check", path)
		}
		if strings.Contains(src, "https://jslib") || strings.Contains(src, "k6/x/") {
			t.Errorf("%s: imports a remote module or an extension", path)
		}
		// open() resolves from the running script in k6: keep it in the entry scripts.
		if strings.Contains(filepath.ToSlash(path), "/lib/") && strings.Contains(src, "open(") {
			t.Errorf("%s: calls open() from a library module", path)
		}
	}
}

func TestScenarioScript(t *testing.T) {
	s, err := ScenarioScript("k6", "hot", map[string]string{"BASE_URL": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Path != filepath.Join("k6", "transfers.js") || s.Env["SCENARIO"] != "hot" || s.Env["BASE_URL"] != "x" {
		t.Errorf("script = %+v", s)
	}
	if _, err := ScenarioScript("k6", "hot", map[string]string{"SCENARIO": "uniform"}); err == nil {
		t.Error("contradicting SCENARIO accepted")
	}
	if _, err := ScenarioScript("k6", "nope", nil); err == nil {
		t.Error("unknown scenario accepted")
	}
}
