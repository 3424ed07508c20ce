package bench

import (
	"fmt"
	"strings"
	"time"
)

// maxOutages bounds the outages a worker remembers; more are counted in
// ReconnectReport.Dropped, not measured.
const maxOutages = 256

// outages follows one worker from failure to recovery: an outage runs from
// the first failure the worker counts after a success (or after its start)
// to its next operation that succeeds: for a session that is the first
// message relayed after it reconnected, for an HTTP connection the next
// whole answer. Only the worker's goroutine touches it.
type outages struct {
	clock         clock // the run's; nil: nothing is tracked
	down          bool  // failing since since, no success yet
	since         time.Duration
	gaps          []time.Duration // the ended outages, at most maxOutages
	dropped       int64           // ended outages past maxOutages
	failed        bool            // some failure was counted
	first, latest time.Duration   // the first and last failures counted (run clock)
}

// fail notes a failure counted now.
func (o *outages) fail() {
	if o.clock == nil {
		return
	}
	now := o.clock.now()
	if !o.failed {
		o.failed, o.first = true, now
	}
	o.latest = now
	if !o.down {
		o.down, o.since = true, now
	}
}

// ok notes an operation that succeeded at now (run clock), ending the
// outage in progress.
func (o *outages) ok(now time.Duration) {
	if !o.down {
		return
	}
	o.down = false
	if len(o.gaps) == maxOutages {
		o.dropped++
		return
	}
	o.gaps = append(o.gaps, max(now-o.since, 0))
}

// ReconnectReport is what the failures of a run cost its clients. Each
// connection or session that failed was without service from its first
// failure until its next operation succeeded (a message relayed on the
// session it opened again, an answer on the connection it dialed again):
// one outage, whose length includes the harness's pause after a failure
// (50 ms) and the new connections' handshakes.
type ReconnectReport struct {
	// Time summarizes the lengths of the outages that ended; its Count is
	// their number (up to 256 a client are measured).
	Time LatencySummary
	// Dropped counts ended outages past 256 of one client: not measured.
	Dropped int64
	// Unrecovered counts the clients still without service when the run
	// ended: failing since their last success, no success after.
	Unrecovered int64
	// FirstError and LastError are the wall-clock times of the first and
	// the last failure counted; zero without failures.
	FirstError, LastError time.Time
}

// reconnectReport digests the workers' outages of a run started at start;
// nil when no worker counted a failure.
func reconnectReport(start time.Time, workers []*workerStats) *ReconnectReport {
	h := newLatencyHistogram()
	rep := &ReconnectReport{}
	var first, last time.Duration
	seen := false
	for _, w := range workers {
		o := &w.outage
		if !o.failed {
			continue
		}
		if !seen || o.first < first {
			first = o.first
		}
		if !seen || o.latest > last {
			last = o.latest
		}
		seen = true
		for _, g := range o.gaps {
			recordLatency(h, g)
		}
		rep.Dropped += o.dropped
		if o.down {
			rep.Unrecovered++
		}
	}
	if !seen {
		return nil
	}
	rep.Time = summarize(h)
	rep.FirstError, rep.LastError = start.Add(first), start.Add(last)
	return rep
}

// writeText prints r in a few lines.
func (r *ReconnectReport) writeText(b *strings.Builder) {
	l := r.Time
	fmt.Fprintf(b, "reconnects %d (first failure to next success): p50 %s, p99 %s, max %s; unrecovered %d",
		l.Count, fmtLatency(l.P50), fmtLatency(l.P99), fmtLatency(l.Max), r.Unrecovered)
	if r.Dropped > 0 {
		fmt.Fprintf(b, ", %d more not measured", r.Dropped)
	}
	fmt.Fprintf(b, "\nfailures from %s to %s\n", r.FirstError.Format("15:04:05.000"), r.LastError.Format("15:04:05.000"))
}

// reconnectJSON is ReconnectReport in Report.WriteJSON. Durations are in
// microseconds; times are RFC 3339 with nanoseconds.
type reconnectJSON struct {
	Count       int64     `json:"count"`
	P50         int64     `json:"p50_us"`
	P90         int64     `json:"p90_us"`
	P99         int64     `json:"p99_us"`
	Max         int64     `json:"max_us"`
	Dropped     int64     `json:"not_measured"`
	Unrecovered int64     `json:"unrecovered"`
	FirstError  time.Time `json:"first_error"`
	LastError   time.Time `json:"last_error"`
}

func (r *ReconnectReport) json() *reconnectJSON {
	if r == nil {
		return nil
	}
	l := r.Time
	return &reconnectJSON{
		Count: l.Count, P50: l.P50.Microseconds(), P90: l.P90.Microseconds(), P99: l.P99.Microseconds(),
		Max: l.Max.Microseconds(), Dropped: r.Dropped, Unrecovered: r.Unrecovered,
		FirstError: r.FirstError, LastError: r.LastError,
	}
}
