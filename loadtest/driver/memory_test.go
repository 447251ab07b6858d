package driver

import (
	"os"
	"strings"
	"testing"
)

func TestParseProcStatus(t *testing.T) {
	status := "Name:\t7awel\nVmPeak:\t 1300000 kB\nVmHWM:\t   65536 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n"
	rss, hwm, err := parseProcStatus([]byte(status))
	if err != nil || rss != 40960<<10 || hwm != 65536<<10 {
		t.Fatalf("rss %d hwm %d err %v", rss, hwm, err)
	}
	if _, _, err := parseProcStatus([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("a status without VmRSS must be an error")
	}
	// This process has both.
	rss, hwm, err = ProcStatus(os.Getpid())
	if err != nil || rss <= 0 || hwm < rss {
		t.Errorf("own status: rss %d hwm %d err %v", rss, hwm, err)
	}
}

func TestParseResidentMemory(t *testing.T) {
	text := `# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes_total_fake 1
process_resident_memory_bytes{region="me-central1"} 4.2614784e+07
`
	got, err := ParseResidentMemory(strings.NewReader(text))
	if err != nil || got != 42614784 {
		t.Fatalf("got %d, %v", got, err)
	}
	if _, err := ParseResidentMemory(strings.NewReader("go_goroutines 8\n")); err == nil {
		t.Error("no metric must be an error")
	}
}

func TestCPUAccounting(t *testing.T) {
	// A command name with spaces and a parenthesis must not shift the fields.
	stat := "4242 (7awel (serve) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 1000000 2000 18446744073709551615\n"
	s, err := parsePidStat([]byte(stat))
	if err != nil || s != 3.0 {
		t.Fatalf("utime+stime = %v s, %v; want 3.00", s, err)
	}
	if _, err := parsePidStat([]byte("4242 (x) S 1")); err == nil {
		t.Error("a short stat line must be an error")
	}
	own, err := procCPUSeconds(os.Getpid())
	if err != nil || own < 0 {
		t.Errorf("own cpu %v %v", own, err)
	}
	procStat := "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\ncpu1 50 0 25 400 25 0 0 0 0 0\nintr 1\n"
	busy, total, cores := parseProcStat([]byte(procStat))
	if busy != 150 || total != 1000 || cores != 2 {
		t.Errorf("busy %v total %v cores %v", busy, total, cores)
	}
	a := cpuMark{server: 1, driver: 2, busy: 100, total: 1000, cores: 2}
	b := cpuMark{server: 3, driver: 2.5, busy: 400, total: 1400, cores: 2}
	c := b.since(a, 1000)
	if c.ServerSeconds != 2 || c.DriverSeconds != 0.5 || c.MachineBusy != 0.75 || c.ServerMsPerOp != 2 || c.DriverMsPerOp != 0.5 {
		t.Errorf("cpu %+v", c)
	}
}
