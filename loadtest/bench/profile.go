package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/google/pprof/profile"
)

// Share is the part of the server's CPU time whose stacks include a kind of work.
type Share struct {
	What    string  `json:"what"`
	Percent float64 `json:"percent"`
}

// costCategories name the work a request does, by the function-name prefixes that show it.
// A sample counts toward every category its stack touches (cumulative), so shares overlap:
// pgx's time is also inside storage's.
var costCategories = []struct {
	what     string
	prefixes []string
}{
	{"PIN hashing (argon2)", []string{"golang.org/x/crypto/argon2."}},
	{"storage package (transactions, SQL, retries)", []string{"github.com/7awel/wallet/storage."}},
	{"PostgreSQL driver (pgx, pool)", []string{"github.com/jackc/pgx/", "github.com/jackc/puddle/"}},
	{"HTTP handlers (server package)", []string{"github.com/7awel/wallet/server."}},
	{"HTTP serving (net/http, read/write)", []string{"net/http.(*conn)", "net/http.(*response)", "net/http.(*chunkWriter)"}},
	{"JSON encode/decode", []string{"encoding/json."}},
	{"access tokens (JWT, Ed25519)", []string{"github.com/golang-jwt/", "crypto/ed25519.", "crypto/internal/fips140/ed25519"}},
	{"PII encryption and blind indexes (AES-GCM, HMAC)", []string{"crypto/aes.", "crypto/cipher.", "crypto/hmac.", "crypto/internal/fips140/aes", "crypto/internal/fips140/hmac"}},
	{"decimal arithmetic", []string{"github.com/shopspring/decimal.", "math/big."}},
	{"logging (zap)", []string{"go.uber.org/zap"}},
	{"metrics (Prometheus)", []string{"github.com/prometheus/"}},
	{"memory allocation (mallocgc)", []string{"runtime.mallocgc"}},
	{"garbage collection (background and assists)", []string{"runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge"}},
	{"system calls (network I/O)", []string{"syscall.", "internal/runtime/syscall.", "internal/poll."}},
	{"scheduler (idle, park, netpoll)", []string{"runtime.schedule", "runtime.findRunnable", "runtime.netpoll", "runtime.park_m"}},
}

// profileShares reads a CPU profile and returns the share of each category, largest first,
// plus the profile's total CPU time.
func profileShares(path string) ([]Share, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, "", err
	}
	return shares(p)
}

func shares(p *profile.Profile) ([]Share, string, error) {
	vi := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			vi = i
		}
	}
	if vi < 0 {
		return nil, "", fmt.Errorf("not a CPU profile: sample types %v", p.SampleType)
	}
	var total int64
	got := make([]int64, len(costCategories))
	for _, s := range p.Sample {
		v := s.Value[vi]
		total += v
		hit := make([]bool, len(costCategories))
		for _, loc := range s.Location {
			for _, line := range loc.Line {
				if line.Function == nil {
					continue
				}
				name := line.Function.Name
				for ci, c := range costCategories {
					if hit[ci] {
						continue
					}
					for _, pre := range c.prefixes {
						if strings.HasPrefix(name, pre) {
							hit[ci] = true
							break
						}
					}
				}
			}
		}
		for ci, h := range hit {
			if h {
				got[ci] += v
			}
		}
	}
	if total == 0 {
		return nil, "", fmt.Errorf("the profile has no samples")
	}
	var out []Share
	for ci, c := range costCategories {
		if got[ci] == 0 {
			continue
		}
		out = append(out, Share{What: c.what, Percent: float64(got[ci]) * 100 / float64(total)})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Percent > out[j].Percent })
	wall := float64(p.DurationNanos) / 1e9
	return out, fmt.Sprintf("%.2f s of CPU in %.1f s (%.0f%% of one core on average)", float64(total)/1e9, wall, float64(total)/1e9/wall*100), nil
}
