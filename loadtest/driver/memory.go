package driver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Memory is the server's resident memory as the driver saw it.
type Memory struct {
	// Source is "/proc/<pid>/status", the metrics URL, or "" when none was given.
	Source string `json:"source,omitempty"`
	// PeakRSSBytes is the largest VmRSS (or process_resident_memory_bytes) sampled during
	// the load, every 250 ms.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// HWMBytes is the kernel's VmHWM at the end: the peak over the process's whole life,
	// setup included, between samples included (/proc only).
	HWMBytes int64  `json:"hwm_bytes,omitempty"`
	Samples  int    `json:"samples"`
	Error    string `json:"error,omitempty"`
}

// PeakMiB is the best peak the driver has, in MiB.
func (m Memory) PeakMiB() float64 {
	return float64(max(m.PeakRSSBytes, m.HWMBytes)) / (1 << 20)
}

// ProcStatus reads VmRSS and VmHWM of a process from /proc/<pid>/status, in bytes.
func ProcStatus(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseProcStatus(b)
}

func parseProcStatus(b []byte) (rss, hwm int64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc status: %s: %q is not a size in kB", key, val)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc status: %s: %w", key, err)
		}
		if key == "VmRSS" {
			rss = n << 10
		} else {
			hwm = n << 10
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("/proc status: no VmRSS/VmHWM (a kernel thread, or not Linux)")
	}
	return rss, hwm, nil
}

// ParseResidentMemory finds process_resident_memory_bytes in a Prometheus text exposition
// (labels allowed, e.g. a region label).
func ParseResidentMemory(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "process_resident_memory_bytes")
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("process_resident_memory_bytes: %w", err)
		}
		return int64(v), nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no process_resident_memory_bytes in the metrics")
}

type memSampler struct {
	pid    int
	url    string
	client *http.Client
	mu     sync.Mutex
	m      Memory
	cancel context.CancelFunc
	done   chan struct{}
}

func newMemSampler(pid int, metricsURL string, client *http.Client) *memSampler {
	s := &memSampler{pid: pid, url: metricsURL, client: client}
	switch {
	case pid > 0:
		s.m.Source = fmt.Sprintf("/proc/%d/status", pid)
	case metricsURL != "":
		s.m.Source = metricsURL
	}
	return s
}

func (s *memSampler) sample(ctx context.Context) {
	var rss int64
	var err error
	if s.pid > 0 {
		rss, _, err = ProcStatus(s.pid)
	} else {
		rss, err = s.scrape(ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			s.m.Error = err.Error()
		}
		return
	}
	s.m.Samples++
	s.m.PeakRSSBytes = max(s.m.PeakRSSBytes, rss)
}

func (s *memSampler) scrape(ctx context.Context) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", s.url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: HTTP %d", s.url, resp.StatusCode)
	}
	return ParseResidentMemory(resp.Body)
}

func (s *memSampler) start(ctx context.Context) {
	if s.m.Source == "" {
		return
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			s.sample(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (s *memSampler) stop() Memory {
	if s.cancel == nil {
		return s.m
	}
	s.cancel()
	<-s.done
	s.sample(context.Background())
	if s.pid > 0 {
		if _, hwm, err := ProcStatus(s.pid); err == nil {
			s.m.HWMBytes = hwm
		}
	}
	return s.m
}
