package driver

import (
	"math"
	"slices"
	"time"
)

// Samples holds every latency of one operation. Runs are bounded (minutes at thousands of
// requests per second), so keeping all samples costs a few MB and gives exact percentiles
// instead of a histogram's approximations. Not safe for concurrent use: each worker has its
// own and they are merged at the end.
type Samples struct {
	d      []time.Duration
	sorted bool
}

// Add records one latency.
func (s *Samples) Add(d time.Duration) {
	s.d = append(s.d, d)
	s.sorted = false
}

// Merge appends another worker's samples.
func (s *Samples) Merge(o *Samples) {
	s.d = append(s.d, o.d...)
	s.sorted = false
}

// Len is the number of samples.
func (s *Samples) Len() int { return len(s.d) }

func (s *Samples) sort() {
	if !s.sorted {
		slices.Sort(s.d)
		s.sorted = true
	}
}

// Percentile returns the nearest-rank percentile p (0 < p <= 100): the smallest sample such
// that at least p% of the samples are less than or equal to it. 0 without samples.
func (s *Samples) Percentile(p float64) time.Duration {
	if len(s.d) == 0 {
		return 0
	}
	s.sort()
	rank := int(math.Ceil(p / 100 * float64(len(s.d))))
	rank = min(max(rank, 1), len(s.d))
	return s.d[rank-1]
}

// Summary is a latency distribution in milliseconds, as the report shows it.
type Summary struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean_ms"`
	Min   float64 `json:"min_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Summarize computes the report's view of the samples.
func (s *Samples) Summarize() Summary {
	if len(s.d) == 0 {
		return Summary{}
	}
	s.sort()
	var total time.Duration
	for _, d := range s.d {
		total += d
	}
	return Summary{
		Count: len(s.d),
		Mean:  ms(total / time.Duration(len(s.d))),
		Min:   ms(s.d[0]),
		P50:   ms(s.Percentile(50)),
		P90:   ms(s.Percentile(90)),
		P99:   ms(s.Percentile(99)),
		Max:   ms(s.d[len(s.d)-1]),
	}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }
