package bench

import (
	"bytes"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseProcStat(b)
	if err != nil {
		t.Fatal(err)
	}
	// user+nice+system+irq+softirq+steal of the "cpu" line; guest (1000)
	// is in user already.
	busy := int64(607477 + 2529 + 256801 + 100 + 64468 + 2954)
	want := cpuTimes{busy: busy, steal: 2954, total: busy + 533393 + 2562}
	if got != want {
		t.Errorf("parseProcStat = %+v, want %+v", got, want)
	}
	for _, bad := range []string{
		"",
		"cpu0 1 2 3 4 5 6 7 8\n",          // no aggregate line
		"cpu  1 2 3 4 5 6 7\n",            // 7 times
		"cpu  1 2 3 4 5 6 7 x\n",          // not a number
		"cpu  1 2 3 -4 5 6 7 8 0 0\n",     // negative
		"intr 1\ncpu  1 2 3 4 5 6 7 9z\n", // after other lines
	} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q): no error", bad)
		}
	}
}

func TestParseSchedstat(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/proc/schedstat")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := parseSchedstat(b); err != nil || got != 114134602*time.Nanosecond {
		t.Errorf("parseSchedstat = %v, %v, want 114.134602ms", got, err)
	}
	for _, bad := range []string{"", "12\n", "12 x 3\n", "12 -5 3\n"} {
		if _, err := parseSchedstat([]byte(bad)); err == nil {
			t.Errorf("parseSchedstat(%q): no error", bad)
		}
	}
}

func TestContentionDerived(t *testing.T) {
	t.Parallel()
	mark := func(busy, steal, total int64, bench, runq time.Duration) contentionMark {
		return contentionMark{machine: cpuTimes{busy: busy, steal: steal, total: total}, machineOK: true, benchCPU: bench, runq: runq}
	}
	// 2 CPUs over 2 s: 400 ticks. Busy 300 ticks (3 s), of which the
	// benchmark 2 s and the generator 0.6 s: 0.4 s outside, 10%.
	before := mark(1000, 10, 5000, 7*time.Second, time.Second)
	after := mark(1300, 30, 5400, 9*time.Second, 1100*time.Millisecond)
	c := contention(before, after, 600*time.Millisecond, 2*time.Second)
	near := func(got, want float64) bool { return got > want-1e-9 && got < want+1e-9 }
	if !c.Known || !near(c.OutsideCPU, 0.10) || !near(c.Steal, 0.05) || c.RunqWait != 50*time.Millisecond {
		t.Errorf("contention = %+v, want known, outside 0.10, steal 0.05, runq 50ms/s", c)
	}
	if c.Disturbed() {
		t.Error("10% outside: disturbed, want not (above 10% only)")
	}
	// The benchmark's processes read more than the machine (their ticks
	// round apart): clamped at 0.
	c = contention(before, mark(1300, 10, 5400, 10*time.Second, time.Second), 0, 2*time.Second)
	if !c.Known || c.OutsideCPU != 0 || c.Steal != 0 || c.RunqWait != 0 {
		t.Errorf("own above busy: %+v, want outside 0", c)
	}
	// Busy 400 of 400 ticks, the benchmark 1 s: 3 s of 4 outside.
	c = contention(before, mark(1400, 10, 5400, 8*time.Second, time.Second), 0, 2*time.Second)
	if !near(c.OutsideCPU, 0.75) || !c.Disturbed() {
		t.Errorf("busy machine: %+v, want outside 0.75, disturbed", c)
	}
	// No /proc/stat: unknown, never disturbed.
	unknown := after
	unknown.machineOK = false
	if c := contention(before, unknown, 0, 2*time.Second); c.Known || c.Disturbed() {
		t.Errorf("without /proc/stat: %+v, want unknown", c)
	}
	if got := outsideShare(time.Second, 0, 0); got != 0 {
		t.Errorf("outsideShare over no time = %v, want 0", got)
	}
}

func TestDisturbedRunsFlagged(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	s := func(round int, outside float64, runq time.Duration) Sample {
		return Sample{Round: round, PerSecond: 1000, P50: ms, P99: 2 * ms,
			Contention: Contention{Known: true, OutsideCPU: outside, RunqWait: runq}}
	}
	c := &Comparison{
		Peers:     []string{PeerTether, PeerHAProxy},
		Scenarios: []string{CompareHTTP},
		Samples: map[sampleKey][]Sample{
			{CompareHTTP, PeerTether, GeneratorWrk}:  {s(1, 0.02, 4*ms), s(2, 0.23, 30*ms), s(3, 0.04, 6*ms)},
			{CompareHTTP, PeerHAProxy, GeneratorWrk}: {s(1, 0.01, ms), s(2, 0.10, 2*ms), s(3, 0.03, 3*ms)},
		},
	}
	var b bytes.Buffer
	if err := c.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| outside CPU | peer runq wait |",
		"| 0 | 4% ! | 6.0 ms/s |", // tether: medians 4% and 6 ms/s, a run disturbed
		"| 0 | 3% | 2.0 ms/s |",   // haproxy: 10% is not above 10%
		"note: ! disturbed runs (outside CPU above 10% of the machine",
		": http wrk tether round 2 (23%)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "haproxy round") {
		t.Errorf("haproxy flagged:\n%s", out)
	}

	// No disturbed run: no note; unknown contention: n/a.
	c.Samples = map[sampleKey][]Sample{{CompareHTTP, PeerTether, GeneratorGo}: {{Round: 1, PerSecond: 1}}}
	b.Reset()
	if err := c.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); strings.Contains(out, "disturbed runs") || !strings.Contains(out, "| n/a | n/a |") {
		t.Errorf("undisturbed, unknown table:\n%s", out)
	}
}

// TestContentionReadsThisProcess reads /proc for this process: its
// threads' run-queue wait, its CPU time and the machine's.
func TestContentionReadsThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc: Linux only")
	}
	pid := os.Getpid()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/task/" + tasks[0].Name() + "/schedstat")
	if os.IsNotExist(err) {
		t.Skip("no schedstat (kernel without CONFIG_SCHED_INFO)")
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseSchedstat(b); err != nil {
		t.Fatal(err)
	}
	before, t0 := markContention([]int{pid}, nil), time.Now()
	// Some CPU time, bounded: 50 ms of work.
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
		runtime.Gosched()
	}
	after := markContention([]int{pid}, nil)
	if !before.machineOK || !after.machineOK {
		t.Fatal("/proc/stat not read")
	}
	if after.runq < before.runq || before.runq < 0 {
		t.Errorf("run-queue wait went from %v to %v", before.runq, after.runq)
	}
	if after.benchCPU <= before.benchCPU {
		t.Errorf("this process's CPU time went from %v to %v, want more", before.benchCPU, after.benchCPU)
	}
	if after.machine.total < before.machine.total || after.machine.busy < before.machine.busy {
		t.Errorf("machine times went back: %+v then %+v", before.machine, after.machine)
	}
	c := contention(before, after, 0, time.Since(t0))
	if !c.Known || c.OutsideCPU < 0 || c.OutsideCPU > 1 {
		t.Errorf("contention = %+v, want known, outside within 0..1", c)
	}
}
