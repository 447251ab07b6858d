package driver

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/7awel/wallet/loadtest/scenarios"
)

// Clock is the time source of the pacer, so tests can run a schedule without waiting.
type Clock interface {
	Now() time.Time
	// SleepUntil returns at t, or with ctx's error if ctx ends first.
	SleepUntil(ctx context.Context, t time.Time) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RateStage is a stretch of an arrival-rate schedule: the rate goes linearly from From to To
// iterations per second over Duration (From == To for a constant rate).
type RateStage struct {
	From, To float64
	Duration time.Duration
}

// Schedule is when each iteration of an open-loop run starts: iteration i starts when the
// integral of the rate reaches i, as k6's arrival-rate executors do.
type Schedule struct {
	Stages []RateStage
}

// ConstantSchedule is perSecond iterations per second for d.
func ConstantSchedule(perSecond float64, d time.Duration) Schedule {
	return Schedule{Stages: []RateStage{{From: perSecond, To: perSecond, Duration: d}}}
}

// ScheduleFor turns a scenario's arrival-rate load into a schedule. rate > 0 replaces it with
// a constant rate (per second); duration > 0 replaces the duration, scaling ramping stages
// in proportion so the shape stays the same.
func ScheduleFor(l scenarios.Load, rate float64, duration time.Duration) (Schedule, error) {
	unit := l.TimeUnitDuration().Seconds()
	total := l.TotalDuration()
	if duration <= 0 {
		duration = total
	}
	if rate > 0 {
		return ConstantSchedule(rate, duration), nil
	}
	switch l.Executor {
	case scenarios.ConstantArrivalRate:
		return ConstantSchedule(float64(l.Rate)/unit, duration), nil
	case scenarios.RampingArrivalRate:
		scale := float64(duration) / float64(total)
		var s Schedule
		from := float64(l.StartRate) / unit
		for _, st := range l.Stages {
			d, err := time.ParseDuration(st.Duration)
			if err != nil {
				return Schedule{}, err
			}
			to := float64(st.Target) / unit
			s.Stages = append(s.Stages, RateStage{From: from, To: to, Duration: time.Duration(float64(d) * scale)})
			from = to
		}
		return s, nil
	}
	return Schedule{}, fmt.Errorf("driver: executor %s has no arrival rate; give -rate for an open-loop run", l.Executor)
}

// Duration is the whole schedule's length.
func (s Schedule) Duration() time.Duration {
	var d time.Duration
	for _, st := range s.Stages {
		d += st.Duration
	}
	return d
}

// Total is how many iterations the schedule starts (the integral of the rate), rounded down.
func (s Schedule) Total() int64 {
	var n float64
	for _, st := range s.Stages {
		n += (st.From + st.To) / 2 * st.Duration.Seconds()
	}
	// A tiny epsilon so that 500/s for 60 s is 30000, not 29999.999….
	return int64(math.Floor(n + 1e-9))
}

// Offset is when iteration i (from 0) starts, from the start of the run; false when the
// schedule ends before it.
func (s Schedule) Offset(i int64) (time.Duration, bool) {
	if i < 0 || i >= s.Total() {
		return 0, false
	}
	n := float64(i)
	var at time.Duration
	for _, st := range s.Stages {
		secs := st.Duration.Seconds()
		inStage := (st.From + st.To) / 2 * secs
		if n >= inStage {
			n -= inStage
			at += st.Duration
			continue
		}
		// Solve From·t + k·t² = n for t in [0, secs], k = (To-From)/(2·secs).
		k := (st.To - st.From) / (2 * secs)
		var t float64
		if math.Abs(k) < 1e-12 {
			t = n / st.From
		} else {
			disc := st.From*st.From + 4*k*n
			t = (-st.From + math.Sqrt(math.Max(disc, 0))) / (2 * k)
		}
		t = math.Min(math.Max(t, 0), secs)
		return at + time.Duration(t*float64(time.Second)), true
	}
	return 0, false
}

// pace starts the schedule's iterations on time. dispatch hands iteration i to a free worker
// and says whether there was one; an iteration without one is dropped, not queued, which
// keeps the run open-loop: a slow server does not slow the arrivals down. When the pacer
// itself falls behind (a late wake-up) the iterations that are due start at once.
func pace(ctx context.Context, clock Clock, s Schedule, start time.Time, dispatch func(i int64) bool) (started, dropped int64) {
	for i := int64(0); ; i++ {
		off, ok := s.Offset(i)
		if !ok {
			return started, dropped
		}
		if err := clock.SleepUntil(ctx, start.Add(off)); err != nil {
			return started, dropped
		}
		if dispatch(i) {
			started++
		} else {
			dropped++
		}
	}
}
