package k6run

import (
	"fmt"
	"maps"
	"path/filepath"

	"github.com/7awel/wallet/loadtest/scenarios"
)

// ScenarioScript is the Script that runs one scenario of scenarios.json: its k6 script in
// k6Dir (loadtest/k6) with SCENARIO set, plus env (BASE_URL, OPS_KEY, USERS, RUN_ID, ...).
// Iterations and VUs are left for the caller.
//
// The end-to-end test against a real server is meant to be this loop:
//
//	f, _ := scenarios.Embedded()
//	for _, name := range f.Names() {
//		s, err := k6run.ScenarioScript("../k6", name, map[string]string{
//			"BASE_URL": srv.URL, "OPS_KEY": opsKey, "USERS": "6", "RUN_ID": "123"})
//		s.Iterations, s.VUs = 30, 3
//		res, err := k6run.Run(ctx, s)  // err: setup/teardown failed, e.g. money not conserved
//		problems := res.Problems()     // failed checks and iteration errors: want none
//	}
func ScenarioScript(k6Dir, scenario string, env map[string]string) (Script, error) {
	sc, err := scenarios.Get(scenario)
	if err != nil {
		return Script{}, err
	}
	e := maps.Clone(env)
	if e == nil {
		e = map[string]string{}
	}
	if v, ok := e["SCENARIO"]; ok && v != scenario {
		return Script{}, fmt.Errorf("k6run: env SCENARIO=%s contradicts scenario %s", v, scenario)
	}
	e["SCENARIO"] = scenario
	return Script{Path: filepath.Join(k6Dir, sc.Script), Env: e}, nil
}
