package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// disturbedShare is the share of the machine's CPU time taken outside the
// benchmark above which a run is marked disturbed: its latency tail tells
// of the other work more than of the peer.
const disturbedShare = 0.10

// Contention is what other work took of the machine during one run.
type Contention struct {
	// Known is false where /proc/stat cannot be read (not Linux).
	Known bool
	// OutsideCPU is the machine's busy CPU time over the run less the
	// benchmark processes' (the peer's, the nodes', the comparing
	// process's, the outside generator's), clamped at 0, as a share of
	// the machine's CPU time (every CPU over the run: 1 = all busy).
	OutsideCPU float64
	// Steal is the time the hypervisor gave the machine's CPUs to others,
	// as the same share (it is part of OutsideCPU).
	Steal float64
	// RunqWait is the time the peer's threads waited on a run queue,
	// ready but not running, per second of the run.
	RunqWait time.Duration
}

// Disturbed reports a run whose outside CPU exceeds disturbedShare.
func (c Contention) Disturbed() bool { return c.Known && c.OutsideCPU > disturbedShare }

// cpuTimes are the machine's CPU times of the "cpu" line of /proc/stat,
// in clock ticks summed over the CPUs.
type cpuTimes struct {
	busy  int64 // user+nice+system+irq+softirq+steal
	steal int64
	total int64 // every field: busy, idle and iowait too
}

// parseProcStat reads the "cpu" line of a /proc/stat text: user nice
// system idle iowait irq softirq steal [guest guest_nice]. Guest time is
// already in user and nice, so it is not added again.
func parseProcStat(b []byte) (cpuTimes, error) {
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) == 0 || string(f[0]) != "cpu" {
			continue
		}
		if len(f) < 9 {
			return cpuTimes{}, fmt.Errorf("/proc/stat: cpu line with %d fields, want at least 8 times", len(f)-1)
		}
		var v [8]int64
		for i := range v {
			n, err := strconv.ParseInt(string(f[i+1]), 10, 64)
			if err != nil || n < 0 {
				return cpuTimes{}, fmt.Errorf("/proc/stat: cpu time %q", f[i+1])
			}
			v[i] = n
		}
		user, nice, system, idle, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
		busy := user + nice + system + irq + softirq + steal
		return cpuTimes{busy: busy, steal: steal, total: busy + idle + iowait}, nil
	}
	return cpuTimes{}, errors.New("/proc/stat: no cpu line")
}

// readCPUTimes reads the machine's CPU times.
func readCPUTimes() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, fmt.Errorf("read /proc/stat: %w", err)
	}
	return parseProcStat(b)
}

// parseSchedstat reads the run-queue wait, the second of the three
// numbers of a /proc/PID/task/TID/schedstat text (time on the CPU, time
// waiting on a run queue, both in ns, and time slices).
func parseSchedstat(b []byte) (time.Duration, error) {
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, fmt.Errorf("schedstat %q: want 3 numbers", firstBytes(b, 60))
	}
	n, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("schedstat %q: run-queue wait", firstBytes(b, 60))
	}
	return time.Duration(n), nil
}

// runqWait is the run-queue wait of every thread of the processes pids so
// far; threads and processes gone are not counted.
func runqWait(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
		tasks, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, t := range tasks {
			b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
			if err != nil {
				continue
			}
			if d, err := parseSchedstat(b); err == nil {
				sum += d
			}
		}
	}
	return sum
}

// selfCPU is the user and system time of this process so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// contentionMark is one reading before or after a run.
type contentionMark struct {
	machine   cpuTimes
	machineOK bool
	benchCPU  time.Duration // the peer's, the nodes' and this process's CPU time
	runq      time.Duration // the peer's threads' run-queue wait
}

// markContention reads the machine, the benchmark processes (peerPIDs and
// nodePIDs, and this process) and the peer's threads' run-queue wait.
func markContention(peerPIDs, nodePIDs []int) contentionMark {
	var m contentionMark
	var err error
	m.machine, err = readCPUTimes()
	m.machineOK = err == nil
	var ticks int64
	for _, pid := range peerPIDs {
		ticks += cpuTicks(pid)
	}
	for _, pid := range nodePIDs {
		ticks += cpuTicks(pid)
	}
	m.benchCPU = time.Duration(ticks)*time.Second/clockTicks + selfCPU()
	m.runq = runqWait(peerPIDs)
	return m
}

// contention derives a run's Contention from the readings before and
// after it, the CPU time of the outside generator that ran in between
// (0 for none) and the run's length.
func contention(before, after contentionMark, genCPU, elapsed time.Duration) Contention {
	if !before.machineOK || !after.machineOK {
		return Contention{}
	}
	c := Contention{Known: true}
	busy := ticksDuration(after.machine.busy - before.machine.busy)
	total := ticksDuration(after.machine.total - before.machine.total)
	own := after.benchCPU - before.benchCPU + genCPU
	c.OutsideCPU = outsideShare(busy, own, total)
	if total > 0 {
		c.Steal = max(0, float64(ticksDuration(after.machine.steal-before.machine.steal))/float64(total))
	}
	if elapsed > 0 {
		c.RunqWait = time.Duration(float64(max(0, after.runq-before.runq)) / elapsed.Seconds())
	}
	return c
}

// ticksDuration is n clock ticks as a duration.
func ticksDuration(n int64) time.Duration { return time.Duration(n) * time.Second / clockTicks }

// outsideShare is (busy − own) ÷ total, clamped at 0 (the readings of the
// machine and of the processes are rounded apart); 0 when total is not
// positive.
func outsideShare(busy, own, total time.Duration) float64 {
	if total <= 0 {
		return 0
	}
	return max(0, float64(busy-own)/float64(total))
}
