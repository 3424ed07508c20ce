package bench

import (
	"context"
	"time"
)

// Open and closed loops.
//
// In a closed loop (LoadConfig.Rate 0) each connection or session starts
// its next operation when the last one ended, and latency runs from the
// actual start. A slow answer then delays the operations behind it, which
// are never measured at the moments they should have started: the run
// under-reports stalls (coordinated omission).
//
// In an open loop (Rate > 0) each connection or session has a fixed
// schedule, one operation every 1/Rate seconds, staggered across workers.
// An operation starts at its scheduled time, or at once when the one before
// ended late; its latency runs from the scheduled time. A stall of S then
// shows in every operation scheduled during it, as wrk2 counts it. Streams
// of messages (cobrowse, ws-echo, longpoll) go further: the sender keeps to
// the schedule while the receiver reads, so messages do not wait for each
// other at all, and each carries its scheduled time.

// maxRate bounds LoadConfig.Rate: operations a second per connection or
// session.
const maxRate = 1e6

// clock is a run's time since its start. Tests use a fake one.
type clock interface {
	now() time.Duration
	// sleepUntil waits until t; false if ctx ended first.
	sleepUntil(ctx context.Context, t time.Duration) bool
}

// wallClock is the monotonic clock since start.
type wallClock struct {
	start time.Time
}

func (c wallClock) now() time.Duration { return time.Since(c.start) }

func (c wallClock) sleepUntil(ctx context.Context, t time.Duration) bool {
	return sleepCtx(ctx, t-c.now())
}

// pacer is the schedule of one connection or session. It is used by one
// goroutine.
type pacer struct {
	interval time.Duration // 0: closed loop
	next     time.Duration // the scheduled start of the next operation
}

// newPacer returns the schedule of worker i of n at rate operations a
// second; rate 0 is a closed loop. The workers' first operations are
// spread over one interval so that they do not start in lockstep.
func newPacer(rate float64, i, n int) *pacer {
	if rate <= 0 {
		return &pacer{}
	}
	iv := max(time.Duration(float64(time.Second)/rate), 1)
	return &pacer{interval: iv, next: iv * time.Duration(i) / time.Duration(max(n, 1))}
}

// open reports whether p is an open loop.
func (p *pacer) open() bool { return p.interval > 0 }

// tick returns the start of the next operation of p: now in a closed loop;
// in an open loop its scheduled time, after waiting for it if it is ahead.
// ok is false when the run is over: no operation starts after Duration.
func (r *run) tick(p *pacer) (start time.Duration, ok bool) {
	if !r.running() {
		return 0, false
	}
	if !p.open() {
		return r.clock.now(), true
	}
	t := p.next
	if t >= r.cfg.Duration {
		// Past the schedule: the run is over for this worker, so that it
		// opens no new session before the end.
		r.clock.sleepUntil(r.ctx, r.cfg.Duration)
		return 0, false
	}
	p.next += p.interval
	if !r.clock.sleepUntil(r.ctx, t) {
		return 0, false
	}
	return t, true
}
