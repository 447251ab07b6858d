package driver

import (
	"testing"
	"time"
)

func TestPercentilesNearestRank(t *testing.T) {
	var s Samples
	// 100..1 ms, added out of order.
	for i := 100; i >= 1; i-- {
		s.Add(time.Duration(i) * time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50, 90: 90, 99: 99, 100: 100, 0.1: 1, 99.5: 100} {
		if got := s.Percentile(p); got != want*time.Millisecond {
			t.Errorf("p%v = %v, want %vms", p, got, int(want))
		}
	}
	sum := s.Summarize()
	if sum != (Summary{Count: 100, Mean: 50.5, Min: 1, P50: 50, P90: 90, P99: 99, Max: 100}) {
		t.Errorf("summary %+v", sum)
	}
}

func TestPercentilesSmallAndMerged(t *testing.T) {
	var empty Samples
	if empty.Percentile(99) != 0 || empty.Summarize() != (Summary{}) {
		t.Error("empty samples must give zeros")
	}
	var a, b Samples
	a.Add(3 * time.Millisecond)
	if a.Percentile(50) != 3*time.Millisecond || a.Percentile(99) != 3*time.Millisecond {
		t.Error("one sample is every percentile")
	}
	b.Add(1 * time.Millisecond)
	b.Add(2 * time.Millisecond)
	a.Merge(&b)
	// Sorting must happen again after a merge.
	if a.Len() != 3 || a.Percentile(50) != 2*time.Millisecond || a.Summarize().Min != 1 {
		t.Errorf("merged: len %d p50 %v", a.Len(), a.Percentile(50))
	}
	a.Add(1500 * time.Microsecond)
	if got := a.Percentile(50); got != 1500*time.Microsecond {
		t.Errorf("p50 after add = %v", got)
	}
}
