package procs

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// run feeds samples to a policy and returns its answer after each.
func run(p *policy, samples ...sample) []bool {
	out := make([]bool, len(samples))
	for i, s := range samples {
		out[i] = p.next(s)
	}
	return out
}

func repeat(s sample, n int) []sample {
	out := make([]sample, n)
	for i := range out {
		out[i] = s
	}
	return out
}

var (
	idle  = sample{cores: 0.02, waits: 100}
	light = sample{cores: 0.2, waits: 1000}
	mid   = sample{cores: 0.35, waits: 1000} // between downCores and upCores
	busy  = sample{cores: 0.8, waits: 5000}
)

// TestPolicyGoesToOneAfterALightMoment: all processors until downWindows
// light windows in a row; one busy window in between starts the count
// again.
func TestPolicyGoesToOneAfterALightMoment(t *testing.T) {
	var p policy
	got := run(&p, repeat(light, downWindows-1)...)
	for i, one := range got {
		if one {
			t.Fatalf("one processor after %d light windows, want %d", i+1, downWindows)
		}
	}
	if p.next(busy) {
		t.Fatal("one processor after a busy window")
	}
	got = run(&p, repeat(idle, downWindows)...)
	if got[downWindows-2] || !got[downWindows-1] {
		t.Fatalf("after a busy window: one processor at windows %v, want at the %dth light one only", got, downWindows)
	}
}

// TestPolicyBackToAll: on one processor, a window that uses half a CPU, or
// whose goroutines waited to run, brings all processors back at once.
func TestPolicyBackToAll(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    sample
		one  bool
	}{
		{"busy", busy, false},
		{"between the marks", mid, true},
		{"late wake-ups", sample{cores: 0.3, waits: 200, late: 5}, false},
		{"too few late wake-ups", sample{cores: 0.3, waits: 200, late: lateMin - 1}, true},
		{"a small share late", sample{cores: 0.3, waits: 100000, late: 50}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy{one: true}
			if got := p.next(tc.s); got != tc.one {
				t.Errorf("one processor = %v after %+v, want %v", got, tc.s, tc.one)
			}
		})
	}
}

// TestPolicyHoldsBetweenTheMarks: load between downCores and upCores keeps
// whatever tether runs on, so a load near one mark does not flap.
func TestPolicyHoldsBetweenTheMarks(t *testing.T) {
	var all policy
	for i, one := range run(&all, repeat(mid, 3*downWindows)...) {
		if one {
			t.Fatalf("one processor after %d windows between the marks", i+1)
		}
	}
	one := policy{one: true}
	for i, on := range run(&one, repeat(mid, 3*downWindows)...) {
		if !on {
			t.Fatalf("all processors after %d windows between the marks", i+1)
		}
	}
}

// TestAdapterSetsOnChange: runAdapter sets processors only when the policy
// changes its answer, and returns when its context ends.
func TestAdapterSetsOnChange(t *testing.T) {
	samples := append(repeat(idle, downWindows+3), busy, busy, light)
	var mu sync.Mutex
	var sets []bool
	next := 0
	read := func() sample {
		mu.Lock()
		defer mu.Unlock()
		if next >= len(samples) {
			return light
		}
		s := samples[next]
		next++
		return s
	}
	set := func(one bool) int {
		mu.Lock()
		defer mu.Unlock()
		sets = append(sets, one)
		if one {
			return 1
		}
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	ticks := make(chan time.Time)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runAdapter(ctx, ticks, read, set, zerolog.Nop())
	}()
	for range len(samples) - 1 { // the first read starts the first window
		ticks <- time.Time{}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("runAdapter did not return after its context ended")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sets) != 2 || !sets[0] || sets[1] {
		t.Errorf("set calls %v, want [true false]: one processor after the light windows, all at the busy one", sets)
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]int{"auto": 0, "1": 1, "8": 8, "1024": 1024} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "1025", "two", "Auto"} {
		if _, err := Parse(in); err == nil {
			t.Errorf("Parse(%q): no error", in)
		}
	}
}

// TestRunFixed: --procs N sets N processors; GOMAXPROCS in the environment
// keeps its count and starts no adapter.
func TestRunFixed(t *testing.T) {
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	Fix(3)
	Run(3, zerolog.Nop())()
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("GOMAXPROCS %d after --procs 3", got)
	}
	runtime.GOMAXPROCS(prev)

	t.Setenv("GOMAXPROCS", "1")
	var buf bytes.Buffer
	Run(0, zerolog.New(&buf))()
	if got := runtime.GOMAXPROCS(0); got != prev {
		t.Errorf("GOMAXPROCS %d after --procs auto with GOMAXPROCS set, want it kept at %d", got, prev)
	}
	if !strings.Contains(buf.String(), "fixed by GOMAXPROCS") {
		t.Errorf("log %q does not say GOMAXPROCS fixed the count", buf.String())
	}
	// As the runtime reads it: empty or not a count is as if unset.
	for v, want := range map[string]bool{"": false, "0": false, "x": false, "-1": false, "1": true, "16": true} {
		if got := envProcs(v); got != want {
			t.Errorf("GOMAXPROCS=%q fixes the count: %v, want %v", v, got, want)
		}
	}
}

// TestSetOne: one processor, then the runtime's default again.
func TestSetOne(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	runtime.SetDefaultGOMAXPROCS()
	all := runtime.GOMAXPROCS(0)
	if n := setOne(true); n != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("setOne(true) = %d, GOMAXPROCS %d; want 1", n, runtime.GOMAXPROCS(0))
	}
	if n := setOne(false); n != all || runtime.GOMAXPROCS(0) != all {
		t.Errorf("setOne(false) = %d, GOMAXPROCS %d; want the default %d", n, runtime.GOMAXPROCS(0), all)
	}
}
