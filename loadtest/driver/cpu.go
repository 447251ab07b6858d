package driver

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU is where the machine's processor time went during the load phase, to read the
// throughput against: on a shared box the server, PostgreSQL and the driver compete.
type CPU struct {
	// ServerSeconds is the server's user+system time (from /proc/<pid>/stat; ServerPID only).
	ServerSeconds float64 `json:"server_s,omitempty"`
	// DriverSeconds is this process's own user+system time.
	DriverSeconds float64 `json:"driver_s"`
	// MachineBusy is the share of all cores' time that was not idle (/proc/stat), 0..1.
	MachineBusy float64 `json:"machine_busy"`
	// Cores is how many cores /proc/stat counted.
	Cores int `json:"cores"`
	// ServerMsPerOp and DriverMsPerOp divide the CPU time by the throughput's operations.
	ServerMsPerOp float64 `json:"server_ms_per_op,omitempty"`
	DriverMsPerOp float64 `json:"driver_ms_per_op,omitempty"`
}

// clockTick is USER_HZ, the unit of /proc times: 100 on every Linux this runs on (it is fixed
// by the kernel ABI for x86 and arm64; reading it would need cgo's sysconf).
const clockTick = 100

type cpuMark struct {
	server  float64 // seconds, -1 when unknown
	driver  float64
	busy    float64 // ticks
	total   float64
	cores   int
	started time.Time
}

func markCPU(pid int) cpuMark {
	m := cpuMark{server: -1, started: time.Now()}
	if pid > 0 {
		if s, err := procCPUSeconds(pid); err == nil {
			m.server = s
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		m.driver = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		m.busy, m.total, m.cores = parseProcStat(b)
	}
	return m
}

func tvSeconds(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

// since is the CPU used between two marks; ops is the run's throughput count.
func (m cpuMark) since(start cpuMark, ops int64) CPU {
	c := CPU{DriverSeconds: round3(m.driver - start.driver), Cores: m.cores}
	if m.server >= 0 && start.server >= 0 {
		c.ServerSeconds = round3(m.server - start.server)
	}
	if dt := m.total - start.total; dt > 0 {
		c.MachineBusy = round3((m.busy - start.busy) / dt)
	}
	if ops > 0 {
		c.ServerMsPerOp = round3(c.ServerSeconds * 1000 / float64(ops))
		c.DriverMsPerOp = round3(c.DriverSeconds * 1000 / float64(ops))
	}
	return c
}

// procCPUSeconds reads utime+stime of a process from /proc/<pid>/stat.
func procCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parsePidStat(b)
}

func parsePidStat(b []byte) (float64, error) {
	// The command name is in parentheses and may hold spaces: fields count from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/pid/stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')': state(3) ppid(4) ... utime(14) stime(15), so utime is f[11], stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/pid/stat: %d fields", len(f))
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/pid/stat: utime %q stime %q", f[11], f[12])
	}
	return (ut + st) / clockTick, nil
}

// parseProcStat sums the aggregate "cpu" line of /proc/stat: busy and total ticks, and counts
// the per-core lines.
func parseProcStat(b []byte) (busy, total float64, cores int) {
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			cores++
			continue
		}
		// user nice system idle iowait irq softirq steal (guest times are inside user).
		for j := 1; j < len(f) && j <= 8; j++ {
			v, _ := strconv.ParseFloat(f[j], 64)
			total += v
			if j != 4 && j != 5 {
				busy += v
			}
		}
	}
	return busy, total, cores
}
