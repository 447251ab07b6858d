package driver

import (
	"context"
	"testing"
	"time"

	"github.com/7awel/wallet/loadtest/scenarios"
)

func TestConstantScheduleOffsets(t *testing.T) {
	s := ConstantSchedule(10, time.Second)
	if s.Total() != 10 {
		t.Fatalf("total %d", s.Total())
	}
	for i := int64(0); i < 10; i++ {
		off, ok := s.Offset(i)
		if !ok || off != time.Duration(i)*100*time.Millisecond {
			t.Errorf("offset(%d) = %v, %v", i, off, ok)
		}
	}
	if _, ok := s.Offset(10); ok {
		t.Error("iteration 10 of 10 must not exist")
	}
}

// The schedules of the real scenarios start as many iterations as scenarios.go says k6
// would, in order, within the duration.
func TestScenarioSchedules(t *testing.T) {
	f, err := scenarios.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range f.Names() {
		l := f.Scenarios[name].Load
		if l.Executor == scenarios.ConstantVUs {
			if _, err := ScheduleFor(l, 0, 0); err == nil {
				t.Errorf("%s: a constant-vus scenario has no schedule without -rate", name)
			}
			continue
		}
		s, err := ScheduleFor(l, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := s.Total(), int64(l.ExpectedIterations()); got != want {
			t.Errorf("%s: %d iterations, scenarios says %d", name, got, want)
		}
		if s.Duration() != l.TotalDuration() {
			t.Errorf("%s: duration %v", name, s.Duration())
		}
		prev := time.Duration(-1)
		for i := int64(0); i < s.Total(); i++ {
			off, ok := s.Offset(i)
			if !ok || off < prev || off > s.Duration() {
				t.Fatalf("%s: offset(%d) = %v after %v", name, i, off, prev)
			}
			prev = off
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no arrival-rate scenario")
	}
}

func TestRampingSchedule(t *testing.T) {
	// 0 → 10/s over 2 s, then 10/s for 1 s: 10 + 10 iterations.
	l := scenarios.Load{Executor: scenarios.RampingArrivalRate, StartRate: 0, PreAllocatedVUs: 1,
		Stages: []scenarios.Stage{{Target: 10, Duration: "2s"}, {Target: 10, Duration: "1s"}}}
	s, err := ScheduleFor(l, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Total() != 20 {
		t.Fatalf("total %d", s.Total())
	}
	// On the ramp, count(t) = 2.5·t², so iteration 10 (the first of the flat stage) starts at 2 s
	// and iteration 5 at sqrt(2) s.
	if off, _ := s.Offset(10); off != 2*time.Second {
		t.Errorf("offset(10) = %v", off)
	}
	if off, _ := s.Offset(5); (off - 1414*time.Millisecond).Abs() > time.Millisecond {
		t.Errorf("offset(5) = %v", off)
	}
	if off, _ := s.Offset(15); off != 2500*time.Millisecond {
		t.Errorf("offset(15) = %v", off)
	}
	// A shorter duration scales the shape.
	half, _ := ScheduleFor(l, 0, 1500*time.Millisecond)
	if half.Total() != 10 || half.Duration() != 1500*time.Millisecond {
		t.Errorf("scaled: %d iterations over %v", half.Total(), half.Duration())
	}
	// -rate makes it constant.
	c, _ := ScheduleFor(l, 4, 0)
	if c.Total() != 12 {
		t.Errorf("rate override: %d", c.Total())
	}
}

func TestPaceDispatchesOnScheduleAndCountsDropped(t *testing.T) {
	clock := &fakeClock{now: time.Unix(0, 0)}
	start := clock.Now()
	s := ConstantSchedule(100, 100*time.Millisecond) // every 10 ms
	var at []time.Duration
	started, dropped := pace(context.Background(), clock, s, start, func(i int64) bool {
		at = append(at, clock.Now().Sub(start))
		return i%4 != 3 // no free worker for every fourth
	})
	if started != 8 || dropped != 2 || len(at) != 10 {
		t.Fatalf("started %d dropped %d dispatched %d", started, dropped, len(at))
	}
	for i, d := range at {
		if d != time.Duration(i)*10*time.Millisecond {
			t.Errorf("iteration %d dispatched at %v", i, d)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if st, dr := pace(ctx, clock, s, clock.Now(), func(int64) bool { return true }); st != 0 || dr != 0 {
		t.Errorf("a cancelled pace started %d, dropped %d", st, dr)
	}
}
