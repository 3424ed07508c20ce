package procs

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"time"

	"github.com/rs/zerolog"
)

// Why one processor at light load. A request on a keep-alive connection
// wakes goroutines twice: the one that reads it, and the one that waits for
// its node's answer. When a goroutine is woken and another processor is
// idle, the runtime wakes an idle thread to run on it (a futex wake and a
// context switch); that thread finds little to take, looks again, and goes
// back to sleep (a futex wait and another switch). At light load every
// wake-up meets an idle processor, so every request pays this for nothing:
// with one processor the woken goroutine runs on the thread that woke it,
// as an event loop's next event does. Under load the other processors are
// busy, and spreading the work over them is what the runtime is for, so
// tether runs on all of them as soon as it uses more than half a CPU, or
// as soon as its goroutines wait to run (a machine whose other processes
// leave one thread too little CPU). BENCHMARKS.md has the figures.
const (
	window      = 250 * time.Millisecond // one sample
	downWindows = 20                     // windows in a row under downCores before one processor (5 s)
	downCores   = 0.25                   // CPU used, in CPUs, under which tether may run on one processor
	upCores     = 0.5                    // CPU used on one processor from which it runs on all
	lateWait    = time.Millisecond       // a goroutine that waited this long to run is late...
	lateShare   = 0.01                   // ...and this share of late wake-ups (at least lateMin) means all
	lateMin     = 4
)

// sample is one window of the process.
type sample struct {
	cores float64 // CPU time used over the window ÷ its length
	waits uint64  // goroutine wake-ups the runtime sampled in the window
	late  uint64  // those that waited lateWait or longer to run
}

// policy decides, window by window, whether tether runs on one processor.
type policy struct {
	one    bool // on one processor now
	lowRun int  // windows in a row under downCores, on all processors
}

// next takes a window's sample and reports whether tether runs on one
// processor from now on.
func (p *policy) next(s sample) bool {
	if p.one {
		if s.cores >= upCores || (s.late >= lateMin && float64(s.late) >= lateShare*float64(s.waits)) {
			p.one = false
		}
		return p.one
	}
	if s.cores < downCores {
		p.lowRun++
	} else {
		p.lowRun = 0
	}
	if p.lowRun >= downWindows {
		p.one, p.lowRun = true, 0
	}
	return p.one
}

// Parse reads --procs: "auto" (0), or a count of processors from 1 to
// 1024.
func Parse(v string) (int, error) {
	if v == "auto" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1024 {
		return 0, fmt.Errorf("%q: use auto or a count of processors from 1 to 1024", v)
	}
	return n, nil
}

// Fix sets a fixed --procs (fixed > 0) at once; auto (0) changes nothing
// yet. Call it before anything sizes itself by GOMAXPROCS (tether's loops),
// and Run once tether serves.
func Fix(fixed int) {
	if fixed > 0 {
		runtime.GOMAXPROCS(fixed)
	}
}

// Run logs what --procs does and, for auto (fixed 0), starts the adapter,
// unless the GOMAXPROCS environment variable chose a count (kept, as Go
// keeps it) or there is one processor only. The adapter starts at all
// processors and leaves them only after a light moment. The stop it
// returns ends the adapter and waits for it.
func Run(fixed int, log zerolog.Logger) (stop func()) {
	if fixed > 0 {
		log.Info().Int("procs", runtime.GOMAXPROCS(0)).Msg("procs: fixed by --procs")
		return func() {}
	}
	if v := os.Getenv("GOMAXPROCS"); envProcs(v) {
		log.Info().Str("GOMAXPROCS", v).Int("procs", runtime.GOMAXPROCS(0)).Msg("procs: fixed by GOMAXPROCS; --procs auto does not adapt them")
		return func() {}
	}
	all := runtime.GOMAXPROCS(0)
	if all < 2 {
		return func() {}
	}
	cpu, err := newCPUClock()
	if err != nil {
		log.Warn().Err(err).Int("procs", all).Msg("procs: cannot read the process's CPU time; --procs auto keeps all processors")
		return func() {}
	}
	log.Info().Int("procs", all).Msg("procs: auto, one processor while tether uses under a quarter of a CPU for 5s, all from half a CPU")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(window)
		defer t.Stop()
		runAdapter(ctx, t.C, newSampler(cpu).read, setOne, log)
	}()
	return func() { cancel(); <-done }
}

// envProcs reports whether a GOMAXPROCS environment variable of v fixes
// the count, as the runtime reads it: a whole number above 0.
func envProcs(v string) bool {
	n, err := strconv.Atoi(v)
	return err == nil && n > 0
}

// setOne runs Go's code on one processor, or (one false) on the runtime's
// default again, and returns the count it runs on now.
func setOne(one bool) int {
	if one {
		runtime.GOMAXPROCS(1)
		return 1
	}
	runtime.SetDefaultGOMAXPROCS()
	return runtime.GOMAXPROCS(0)
}

// runAdapter is the adapter with its clock (ticks), its sampling and the
// setting of processors injected, for tests.
func runAdapter(ctx context.Context, ticks <-chan time.Time, read func() sample, set func(one bool) int, log zerolog.Logger) {
	var p policy
	read() // the first window starts now
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		s := read()
		was := p.one
		if p.next(s) == was {
			continue
		}
		n := set(p.one)
		log.Debug().Int("procs", n).Float64("cpus_used", s.cores).Uint64("late_wakeups", s.late).Msg("procs: changed")
	}
}

// sampler reads the process's CPU time and the runtime's scheduling
// latencies, and gives their growth since the last read.
type sampler struct {
	cpu      cpuClock
	lastCPU  time.Duration
	lastWall time.Time
	hist     []metrics.Sample
	last     []uint64 // the latency histogram's counts at the last read
	lateFrom int      // first bucket at or over lateWait
}

// cpuClock reads the CPU time the process has used (user and system).
type cpuClock func() (time.Duration, error)

const schedLatencies = "/sched/latencies:seconds"

func newSampler(cpu cpuClock) *sampler {
	return &sampler{cpu: cpu, hist: []metrics.Sample{{Name: schedLatencies}}, lateFrom: -1}
}

// read returns the sample since the last read (the first: since start).
func (s *sampler) read() sample {
	now := time.Now()
	used, err := s.cpu()
	var out sample
	if wall := now.Sub(s.lastWall); err == nil && !s.lastWall.IsZero() && wall > 0 {
		out.cores = float64(used-s.lastCPU) / float64(wall)
	}
	if err == nil {
		s.lastCPU = used
	}
	s.lastWall = now
	metrics.Read(s.hist)
	if s.hist[0].Value.Kind() != metrics.KindFloat64Histogram {
		return out // not in this runtime: CPU use alone decides
	}
	h := s.hist[0].Value.Float64Histogram()
	if s.lateFrom < 0 {
		s.lateFrom = len(h.Counts)
		for i := range h.Counts {
			if h.Buckets[i] >= lateWait.Seconds() {
				s.lateFrom = i
				break
			}
		}
		s.last = make([]uint64, len(h.Counts))
	}
	for i, c := range h.Counts {
		d := c - s.last[i]
		s.last[i] = c
		out.waits += d
		if i >= s.lateFrom {
			out.late += d
		}
	}
	return out
}
