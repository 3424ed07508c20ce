package bench

import (
	"context"
	"testing"
	"time"
)

// fakeClock is a run clock that moves only when told: sleeping jumps to
// the wake-up time at once.
type fakeClock struct{ t time.Duration }

func (c *fakeClock) now() time.Duration { return c.t }

func (c *fakeClock) sleepUntil(ctx context.Context, t time.Duration) bool {
	c.t = max(c.t, t)
	return ctx.Err() == nil
}

// fakeRun is a run of duration on a fake clock, for the pacing arithmetic.
func fakeRun(duration time.Duration) (*run, *fakeClock) {
	c := &fakeClock{}
	return &run{ctx: context.Background(), cfg: LoadConfig{Duration: duration}, clock: c}, c
}

// serveAll runs the operations of one worker on r: tick, then serve
// moves the clock by the operation's service time; it returns each
// operation's latency as the workers record it (now - start).
func serveAll(r *run, c *fakeClock, p *pacer, serve func(i int) time.Duration) []time.Duration {
	var lat []time.Duration
	for i := 0; ; i++ {
		start, ok := r.tick(p)
		if !ok {
			return lat
		}
		c.t += serve(i)
		lat = append(lat, c.t-start)
	}
}

// TestOpenLoopStall checks the open loop's arithmetic against wrk2's: at
// 1000/s with answers of 100 µs and one stall of 50 ms, the operations
// scheduled during the stall are sent late, and each counts the wait from
// its scheduled start; a closed loop sees one slow operation only.
func TestOpenLoopStall(t *testing.T) {
	t.Parallel()
	const us = time.Microsecond
	const ms = time.Millisecond
	serve := func(i int) time.Duration {
		if i == 10 {
			return 50 * ms
		}
		return 100 * us
	}

	r, c := fakeRun(time.Second)
	open := serveAll(r, c, newPacer(1000, 0, 1), serve)
	if len(open) != 1000 {
		t.Fatalf("open loop: %d operations in 1s at 1000/s, want 1000", len(open))
	}
	// Operation 10 is scheduled at 10 ms and ends at 60 ms. Operation k
	// (11..65) is scheduled at k ms but starts when k-1 ended, at
	// 60 ms + (k-11) × 0.1 ms: latency 50 ms - 0.9 ms × (k-10). From 66 on
	// the schedule is ahead again.
	for k, want := range map[int]time.Duration{
		9: 100 * us, 10: 50 * ms, 11: 49100 * us, 12: 48200 * us, 40: 23 * ms, 65: 500 * us, 66: 100 * us, 999: 100 * us,
	} {
		if open[k] != want {
			t.Errorf("open loop: operation %d latency %v, want %v", k, open[k], want)
		}
	}
	slow := 0
	for _, l := range open {
		if l > ms {
			slow++
		}
	}
	if slow != 55 { // operations 10..64
		t.Errorf("open loop: %d operations over 1 ms, want 55", slow)
	}
	h := newLatencyHistogram()
	for _, l := range open {
		recordLatency(h, l)
	}
	if s := summarize(h); s.P99 < 4*ms || s.P90 > ms {
		t.Errorf("open loop: p90 %v, p99 %v; want the stall in p99 only", s.P90, s.P99)
	}

	r, c = fakeRun(time.Second)
	closed := serveAll(r, c, newPacer(0, 0, 1), serve)
	if closed[10] != 50*ms || closed[11] != 100*us {
		t.Errorf("closed loop: latencies %v, %v after the stall; want 50ms, 100µs", closed[10], closed[11])
	}
	// 11 operations by 51 ms, then one every 100 µs until 1 s.
	if n := len(closed); n != 11+9490 {
		t.Errorf("closed loop: %d operations, want %d", n, 11+9490)
	}
	h.Reset()
	for _, l := range closed {
		recordLatency(h, l)
	}
	if s := summarize(h); s.P999 > ms {
		t.Errorf("closed loop: p99.9 %v: one slow operation of thousands should not show", s.P999)
	}
}

func TestPacerSchedule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		rate       float64
		i, n       int
		first, gap time.Duration
	}{
		{"closed", 0, 0, 1, 0, 0},
		{"one worker", 100, 0, 1, 0, 10 * time.Millisecond},
		{"staggered", 100, 1, 4, 2500 * time.Microsecond, 10 * time.Millisecond},
		{"last of four", 100, 3, 4, 7500 * time.Microsecond, 10 * time.Millisecond},
		{"very fast", 1e10, 0, 1, 0, time.Nanosecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newPacer(tc.rate, tc.i, tc.n)
			if p.next != tc.first || p.interval != tc.gap || p.open() != (tc.rate > 0) {
				t.Errorf("pacer %+v, want first %v every %v", p, tc.first, tc.gap)
			}
		})
	}
	// No operation is scheduled at or past the end, and a worker past its
	// schedule waits for the end.
	r, c := fakeRun(35 * time.Millisecond)
	p := newPacer(100, 0, 1)
	var starts []time.Duration
	for {
		start, ok := r.tick(p)
		if !ok {
			break
		}
		starts = append(starts, start)
	}
	if len(starts) != 4 || starts[3] != 30*time.Millisecond || c.t != 35*time.Millisecond {
		t.Errorf("starts %v, clock %v", starts, c.t)
	}
}

func TestTimeline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ d, want time.Duration }{
		{time.Second, time.Second},
		{10 * time.Minute, time.Second},
		{10*time.Minute + time.Millisecond, 2 * time.Second},
		{time.Hour, 6 * time.Second},
	} {
		if got := timelineInterval(tc.d); got != tc.want {
			t.Errorf("timelineInterval(%v) = %v, want %v", tc.d, got, tc.want)
		}
	}
	l := newLatencies(time.Second)
	ms := time.Millisecond
	// Two workers, interleaved, over three seconds; the second second is
	// slow. A late record of an earlier second still lands in it.
	for i := range 100 {
		l.record(i, time.Duration(i)*10*ms, ms)
		l.record(i+1, 1000*ms+time.Duration(i)*10*ms, 20*ms)
	}
	l.record(0, 500*ms, 3*ms)
	l.record(1, 2500*ms, 2*ms)
	h, points := l.merged()
	if h.TotalCount() != 202 {
		t.Fatalf("total %d", h.TotalCount())
	}
	if len(points) != 3 {
		t.Fatalf("points %+v", points)
	}
	for i, want := range []TimelinePoint{
		{At: 0, Count: 101, P50: ms, Max: 3 * ms},
		{At: time.Second, Count: 100, P50: 20 * ms, Max: 20 * ms},
		{At: 2 * time.Second, Count: 1, P50: 2 * ms, Max: 2 * ms},
	} {
		got := points[i]
		near := func(a, b time.Duration) bool { return a >= b-b/50 && a <= b+b/50 } // two digits
		if got.At != want.At || got.Count != want.Count || !near(got.P50, want.P50) || !near(got.Max, want.Max) {
			t.Errorf("point %d = %+v, want %+v", i, got, want)
		}
	}
}
