package k6run

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/dop251/goja"
)

// Phases of a VU: what the script may do depends on them, as in k6.
const (
	phaseInit      = "init"
	phaseSetup     = "setup"
	phaseIteration = "iteration"
	phaseTeardown  = "teardown"
	phaseSummary   = "handleSummary"
)

// vu is one virtual user: its own goja runtime with the script's init context evaluated.
type vu struct {
	r       *runner
	id      int
	rt      *goja.Runtime
	exports *goja.Object
	phase   string

	scenario        *plannedScenario
	iterInScenario  int64
	iterInTest      int64
	iterInInstance  int64
	scenarioStarted time.Time
	groupPath       string
	vuTags          *goja.Object

	jsonParse, jsonStringify, deepFreeze goja.Callable
	responseCallback                     *expectedStatuses
}

// modules are the k6 modules a script may import; anything else fails loudly.
var moduleNames = []string{"k6", "k6/data", "k6/execution", "k6/http", "k6/metrics"}

func (r *runner) newVU(id int) (*vu, error) {
	v := &vu{r: r, id: id, rt: goja.New(), phase: phaseInit, responseCallback: defaultExpected()}
	rt := v.rt
	mustFn := func(src string) goja.Callable {
		val, err := rt.RunString(src)
		if err != nil {
			panic(err) // our own source: a bug here is a bug in k6run
		}
		fn, _ := goja.AssertFunction(val)
		return fn
	}
	v.jsonParse = mustFn("(function (s) { return JSON.parse(s) })")
	v.jsonStringify = mustFn("(function (v) { var s = JSON.stringify(v); return s === undefined ? 'null' : s })")
	v.deepFreeze = mustFn(`(function deepFreeze(o) {
		if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
			Object.freeze(o);
			Object.getOwnPropertyNames(o).forEach(function (k) { deepFreeze(o[k]) });
		}
		return o;
	})`)
	v.vuTags = rt.NewObject()

	modules := map[string]*goja.Object{
		"k6":           v.k6Module(),
		"k6/data":      v.dataModule(),
		"k6/execution": v.executionModule(),
		"k6/http":      v.httpModule(),
		"k6/metrics":   v.metricsModule(),
	}
	set := func(name string, val any) {
		if err := rt.Set(name, val); err != nil {
			panic(err)
		}
	}
	set("require", func(name string) *goja.Object {
		if m, ok := modules[name]; ok {
			return m
		}
		panic(rt.NewGoError(fmt.Errorf("k6run: unknown module %q: only %s are provided (remote jslib imports and k6/x extensions cannot load here)",
			name, strings.Join(moduleNames, ", "))))
	})
	module := rt.NewObject()
	exports := rt.NewObject()
	_ = module.Set("exports", exports)
	set("module", module)
	set("exports", exports)
	env := rt.NewObject()
	for k, val := range r.script.Env {
		_ = env.Set(k, val)
	}
	set("__ENV", env)
	set("__VU", id)
	set("__ITER", 0)
	set("console", v.console())
	set("open", func(call goja.FunctionCall) goja.Value {
		if v.phase != phaseInit {
			panic(rt.NewGoError(errors.New(`the "open()" function is only available in the init stage`)))
		}
		name := call.Argument(0).String()
		b, err := r.open(name)
		if err != nil {
			panic(rt.NewGoError(fmt.Errorf("open(%q): %w", name, err)))
		}
		if call.Argument(1).String() == "b" {
			return rt.ToValue(rt.NewArrayBuffer(b))
		}
		return rt.ToValue(string(b))
	})

	if err := v.call(phaseInit, func() error { _, err := rt.RunProgram(r.prog); return err }); err != nil {
		return nil, fmt.Errorf("k6run: init context of VU %d: %w", id, err)
	}
	v.exports = module.Get("exports").ToObject(rt)
	return v, nil
}

// call runs fn in a phase and turns Go panics into errors, so that a bug in a module
// fails the run instead of the test binary.
func (v *vu) call(phase string, fn func() error) (err error) {
	prev := v.phase
	v.phase = phase
	defer func() {
		v.phase = prev
		if p := recover(); p != nil {
			err = fmt.Errorf("k6run: panic: %v\n%s", p, debug.Stack())
		}
	}()
	err = fn()
	var ex *goja.Exception
	if errors.As(err, &ex) {
		// The full stack, mapped to the original files by the inline source map.
		err = errors.New(strings.TrimSpace(ex.String()))
	}
	return err
}

// throw raises a JS Error from Go.
func (v *vu) throw(format string, args ...any) {
	panic(v.rt.NewGoError(fmt.Errorf(format, args...)))
}

func (v *vu) stringify(val goja.Value) (string, error) {
	out, err := v.jsonStringify(goja.Undefined(), val)
	if err != nil {
		return "", err
	}
	return out.String(), nil
}

func (v *vu) parseJSON(s string) (goja.Value, error) {
	return v.jsonParse(goja.Undefined(), v.rt.ToValue(s))
}

// exportJSON turns a JS value into Go values the way JSON would; undefined is an empty map.
func (v *vu) exportJSON(val goja.Value) (map[string]any, error) {
	out := map[string]any{}
	if val == nil || goja.IsUndefined(val) || goja.IsNull(val) {
		return out, nil
	}
	s, err := v.stringify(val)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("not an object: %s", s)
	}
	return out, nil
}

// beginScenario resets the per-scenario counters of the VU.
func (v *vu) beginScenario(sc plannedScenario) {
	v.scenario = &sc
	v.iterInScenario = 0
	v.scenarioStarted = time.Now()
}

// iteration runs one iteration of the scenario's exec function.
func (v *vu) iteration(sc plannedScenario, i int64, fn goja.Callable, data goja.Value) error {
	v.iterInTest = i
	_ = v.rt.Set("__ITER", v.iterInScenario)
	start := time.Now()
	err := v.call(phaseIteration, func() error { _, err := fn(goja.Undefined(), data); return err })
	tags := v.sampleTags(nil)
	v.r.metrics.add("iteration_duration", "trend", true, msSince(start), tags)
	v.r.metrics.add("iterations", "counter", false, 1, tags)
	v.iterInScenario++
	v.iterInInstance++
	v.r.iterationsDone.Add(1)
	v.groupPath = ""
	return err
}

func msSince(t time.Time) float64 { return float64(time.Since(t)) / float64(time.Millisecond) }

// sampleTags are the tags every sample of this VU carries now: the scenario and its tags,
// the group, the VU's own exec.vu.tags, then the extra ones given with the sample.
func (v *vu) sampleTags(extra map[string]string) map[string]string {
	tags := map[string]string{}
	if v.scenario != nil && v.phase == phaseIteration {
		for k, val := range v.scenario.tags {
			tags[k] = val
		}
		tags["scenario"] = v.scenario.Name
	}
	if v.groupPath != "" {
		tags["group"] = v.groupPath
	}
	for _, k := range v.vuTags.Keys() {
		tags[k] = v.vuTags.Get(k).String()
	}
	for k, val := range extra {
		tags[k] = val
	}
	return tags
}

// tagsArg reads an optional {name: value} tags argument.
func (v *vu) tagsArg(val goja.Value) map[string]string {
	if val == nil || goja.IsUndefined(val) || goja.IsNull(val) {
		return nil
	}
	obj := val.ToObject(v.rt)
	out := map[string]string{}
	for _, k := range obj.Keys() {
		out[k] = obj.Get(k).String()
	}
	return out
}

func (v *vu) console() *goja.Object {
	c := v.rt.NewObject()
	for _, level := range []string{"log", "info", "warn", "error", "debug"} {
		level := level
		_ = c.Set(level, func(call goja.FunctionCall) goja.Value {
			parts := make([]string, len(call.Arguments))
			for i, a := range call.Arguments {
				if obj, ok := a.(*goja.Object); ok && !isError(obj) {
					if s, err := v.stringify(obj); err == nil {
						parts[i] = s
						continue
					}
				}
				parts[i] = a.String()
			}
			v.r.logf("%s [VU %d] %s\n", level, v.id, strings.Join(parts, " "))
			return goja.Undefined()
		})
	}
	return c
}

func isError(o *goja.Object) bool {
	return o.ClassName() == "Error"
}

// k6Module is `k6`: check, group, sleep, fail, randomSeed.
func (v *vu) k6Module() *goja.Object {
	rt := v.rt
	m := rt.NewObject()
	_ = m.Set("check", func(call goja.FunctionCall) goja.Value {
		if v.phase == phaseInit {
			v.throw("check() is not available in the init context")
		}
		val := call.Argument(0)
		sets, ok := call.Argument(1).(*goja.Object)
		if !ok {
			v.throw("check() needs an object of named conditions")
		}
		extra := v.tagsArg(call.Argument(2))
		all := true
		for _, name := range sets.Keys() {
			cond := sets.Get(name)
			passed := cond.ToBoolean()
			if fn, isFn := goja.AssertFunction(cond); isFn {
				out, err := fn(goja.Undefined(), val)
				if err != nil {
					panic(err) // k6 lets the exception end the iteration
				}
				passed = out.ToBoolean()
			}
			tags := v.sampleTags(extra)
			tags["check"] = name
			v.r.addCheck(v.groupPath, name, passed)
			sample := 0.0
			if passed {
				sample = 1
			}
			v.r.metrics.add("checks", "rate", false, sample, tags)
			all = all && passed
		}
		return rt.ToValue(all)
	})
	_ = m.Set("group", func(call goja.FunctionCall) goja.Value {
		if v.phase == phaseInit {
			v.throw("group() is not available in the init context")
		}
		name := call.Argument(0).String()
		if strings.Contains(name, "::") {
			v.throw("group and check names may not contain '::'")
		}
		fn, ok := goja.AssertFunction(call.Argument(1))
		if !ok {
			v.throw("group() needs a function")
		}
		prev := v.groupPath
		v.groupPath = prev + "::" + name
		defer func() { v.groupPath = prev }()
		start := time.Now()
		out, err := fn(goja.Undefined())
		v.r.metrics.add("group_duration", "trend", true, msSince(start), v.sampleTags(nil))
		if err != nil {
			panic(err)
		}
		return out
	})
	// Sleeping would only slow the test down: the runtime proves logic, not timing.
	_ = m.Set("sleep", func(call goja.FunctionCall) goja.Value {
		if d := call.Argument(0).ToFloat(); !(d >= 0) {
			v.throw("sleep() needs a non-negative number of seconds, got %v", call.Argument(0))
		}
		return goja.Undefined()
	})
	_ = m.Set("fail", func(call goja.FunctionCall) goja.Value {
		msg := ""
		if len(call.Arguments) > 0 {
			msg = call.Argument(0).String()
		}
		panic(rt.NewGoError(errors.New(msg)))
	})
	_ = m.Set("randomSeed", func(seed int64) {
		state := uint64(seed)*2654435761 + 1
		rt.SetRandSource(func() float64 {
			state ^= state << 13
			state ^= state >> 7
			state ^= state << 17
			return float64(state>>11) / (1 << 53)
		})
	})
	return m
}

// dataModule is `k6/data`: SharedArray, made once per name and handed to every VU frozen.
func (v *vu) dataModule() *goja.Object {
	rt := v.rt
	m := rt.NewObject()
	_ = m.Set("SharedArray", func(call goja.ConstructorCall) *goja.Object {
		if v.phase != phaseInit {
			v.throw("new SharedArray() is only available in the init context")
		}
		name := call.Argument(0).String()
		if name == "" || goja.IsUndefined(call.Argument(0)) {
			v.throw("SharedArray needs a name")
		}
		v.r.sharedMu.Lock()
		js, ok := v.r.shared[name]
		v.r.sharedMu.Unlock()
		if !ok {
			fn, isFn := goja.AssertFunction(call.Argument(1))
			if !isFn {
				v.throw("SharedArray %q needs a function that returns an array", name)
			}
			out, err := fn(goja.Undefined())
			if err != nil {
				panic(err)
			}
			if obj, isObj := out.(*goja.Object); !isObj || obj.ClassName() != "Array" {
				v.throw("SharedArray %q: the function must return an array", name)
			}
			if js, err = v.stringify(out); err != nil {
				panic(err)
			}
			v.r.sharedMu.Lock()
			v.r.shared[name] = js
			v.r.sharedMu.Unlock()
		}
		arr, err := v.parseJSON(js)
		if err != nil {
			panic(err)
		}
		frozen, err := v.deepFreeze(goja.Undefined(), arr)
		if err != nil {
			panic(err)
		}
		return frozen.ToObject(rt)
	})
	return m
}

// executionModule is `k6/execution`: vu, scenario, instance and test, read live.
func (v *vu) executionModule() *goja.Object {
	rt := v.rt
	m := rt.NewObject()
	getter := func(obj *goja.Object, name string, fn func() any) {
		_ = obj.DefineAccessorProperty(name, rt.ToValue(func() any { return fn() }), nil, goja.FLAG_FALSE, goja.FLAG_TRUE)
	}
	vuObj := rt.NewObject()
	notInInit := func(what string) {
		if v.phase == phaseInit {
			v.throw("getting %s information in the init context is not supported", what)
		}
	}
	getter(vuObj, "idInTest", func() any { notInInit("VU"); return v.id })
	getter(vuObj, "idInInstance", func() any { notInInit("VU"); return v.id })
	getter(vuObj, "iterationInScenario", func() any { notInInit("VU"); return v.iterInScenario })
	getter(vuObj, "iterationInInstance", func() any { notInInit("VU"); return v.iterInInstance })
	_ = vuObj.DefineAccessorProperty("tags", rt.ToValue(func() any { return v.vuTags }), nil, goja.FLAG_FALSE, goja.FLAG_TRUE)

	scen := rt.NewObject()
	inIteration := func() *plannedScenario {
		if v.phase != phaseIteration || v.scenario == nil {
			v.throw("getting scenario information outside of a scenario iteration (in %s) is not supported", v.phase)
		}
		return v.scenario
	}
	getter(scen, "name", func() any { return inIteration().Name })
	getter(scen, "executor", func() any { return inIteration().Executor })
	getter(scen, "startTime", func() any { inIteration(); return v.scenarioStarted.UnixMilli() })
	getter(scen, "progress", func() any { return float64(v.iterInTest) / float64(inIteration().Iterations) })
	getter(scen, "iterationInInstance", func() any { inIteration(); return v.iterInTest })
	getter(scen, "iterationInTest", func() any { inIteration(); return v.iterInTest })

	inst := rt.NewObject()
	getter(inst, "iterationsCompleted", func() any { return v.r.iterationsDone.Load() })
	getter(inst, "iterationsInterrupted", func() any { return 0 })
	getter(inst, "vusActive", func() any { return v.r.script.VUs })
	getter(inst, "vusInitialized", func() any { return v.r.script.VUs })
	getter(inst, "currentTestRunDuration", func() any { return msSince(v.r.start) })

	test := rt.NewObject()
	_ = test.Set("abort", func(call goja.FunctionCall) goja.Value {
		msg := "test aborted"
		if len(call.Arguments) > 0 {
			msg = call.Argument(0).String()
		}
		v.r.aborted.CompareAndSwap(nil, &msg)
		panic(rt.NewGoError(fmt.Errorf("test aborted: %s", msg)))
	})
	getter(test, "options", func() any { return v.exports.Get("options") })

	_ = m.Set("vu", vuObj)
	_ = m.Set("scenario", scen)
	_ = m.Set("instance", inst)
	_ = m.Set("test", test)
	return m
}

// metricsModule is `k6/metrics`: Counter, Gauge, Rate and Trend, declared in init only.
func (v *vu) metricsModule() *goja.Object {
	rt := v.rt
	m := rt.NewObject()
	for _, kind := range []struct{ js, typ string }{{"Counter", "counter"}, {"Gauge", "gauge"}, {"Rate", "rate"}, {"Trend", "trend"}} {
		kind := kind
		_ = m.Set(kind.js, func(call goja.ConstructorCall) *goja.Object {
			if v.phase != phaseInit {
				v.throw("metrics must be declared in the init context")
			}
			name := call.Argument(0).String()
			if !metricNameRE.MatchString(name) {
				v.throw("invalid metric name %q", name)
			}
			isTime := kind.typ == "trend" && call.Argument(1).ToBoolean()
			if err := v.r.metrics.define(name, kind.typ, isTime); err != nil {
				v.throw("%v", err)
			}
			obj := call.This
			_ = obj.Set("name", name)
			_ = obj.Set("add", func(c goja.FunctionCall) goja.Value {
				if v.phase == phaseInit {
					v.throw("metric %s: adding samples in the init context is not supported", name)
				}
				val := c.Argument(0)
				var f float64
				switch {
				case kind.typ == "rate" || val.ExportType() != nil && val.ExportType().Kind().String() == "bool":
					if val.ToBoolean() {
						f = 1
					}
				default:
					f = val.ToFloat()
				}
				if f != f { // NaN: k6 refuses it too
					v.throw("metric %s: %v is not a number", name, val)
				}
				v.r.metrics.add(name, kind.typ, isTime, f, v.sampleTags(v.tagsArg(c.Argument(1))))
				return rt.ToValue(true)
			})
			return nil
		})
	}
	return m
}
