package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// FailoverReport is the outcome of RunFailover.
type FailoverReport struct {
	Target, Admin, Node string
	Elapsed             time.Duration
	Sessions            int   // sessions asked for
	Opened              int   // sessions opened on Node and echoed once
	Told                int   // sessions that got a Close frame with 1012
	TetherSessions      int64 // Node's ws_sessions in /status before the switch; -1 unread
	// Flip is when Node's health was switched off; Detected is Node's
	// "since" in /status once down (zero if tether never had it down).
	// Both are wall-clock times of this machine.
	Flip, Detected time.Time
	// Notify is the time from Detected to each Close 1012 (empty without
	// Detected); First and Last are its exact ends.
	Notify      LatencySummary
	First, Last time.Duration
	// MaxFromFlip is the time from Flip to the last Close 1012; with
	// Detected it is DetectionDelay + Last.
	MaxFromFlip time.Duration
	// ExpectSpread is tether's --evict-spread, as the run was told.
	ExpectSpread time.Duration
	// Errors counts failures by kind: of opening (ws_dial_*, ws_status_*,
	// ws_echo_*, ws_wrong_node), of being told (failover_close_1001,
	// failover_closed without a Close frame, failover_not_told), and of the
	// run (failover_not_detected, status_error, health_switch_*).
	Errors map[string]int64
}

// DetectionDelay is the time from the switch to tether's detection; 0
// without detection.
func (r *FailoverReport) DetectionDelay() time.Duration {
	if r.Detected.IsZero() {
		return 0
	}
	return r.Detected.Sub(r.Flip)
}

// Limit is how long after detection the last client may be told.
func (r *FailoverReport) Limit() time.Duration { return r.ExpectSpread + FailoverLimit }

// ErrorCount is the sum of Errors.
func (r *FailoverReport) ErrorCount() int64 { return sumCounts(r.Errors) }

// Failed reports whether some session was not told 1012, or the last was
// told later than Limit after detection.
func (r *FailoverReport) Failed() bool {
	return r.ErrorCount() > 0 || r.Told < r.Sessions || r.Detected.IsZero() || r.Last > r.Limit()
}

// WriteText prints the report for people.
func (r *FailoverReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "load %s -> %s, node %s (admin %s) for %.2fs\n\n", ScenarioFailover, r.Target, r.Node, r.Admin, r.Elapsed.Seconds())
	fmt.Fprintf(&b, "sessions %d: %d opened on %s and echoed, %d told 1012", r.Sessions, r.Opened, r.Node, r.Told)
	if r.TetherSessions >= 0 {
		fmt.Fprintf(&b, " (tether counted %d on %s)", r.TetherSessions, r.Node)
	}
	b.WriteString("\n")
	if !r.Flip.IsZero() {
		fmt.Fprintf(&b, "health off   %s\n", r.Flip.Format("15:04:05.000000"))
	}
	if !r.Detected.IsZero() {
		fmt.Fprintf(&b, "detected     %s  (down in /status, %s after the switch)\n",
			r.Detected.Format("15:04:05.000000"), fmtSeconds(r.DetectionDelay()))
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\tcount\tmin\tp50\tp90\tp99\tmax\t")
		l := r.Notify
		fmt.Fprintf(tw, "1012 after detection\t%d\t%s\t%s\t%s\t%s\t%s\t\n", l.Count,
			fmtSigned(r.First), fmtSeconds(l.P50), fmtSeconds(l.P90), fmtSeconds(l.P99), fmtSigned(r.Last))
		tw.Flush()
		fmt.Fprintf(&b, "\nlast 1012 %s after the switch (detection %s + %s); first to last %s\n",
			fmtSeconds(r.MaxFromFlip), fmtSeconds(r.DetectionDelay()), fmtSigned(r.Last), fmtSeconds(r.Last-r.First))
	} else if r.Told > 0 {
		fmt.Fprintf(&b, "not detected; last 1012 %s after the switch\n", fmtSeconds(r.MaxFromFlip))
	}

	fmt.Fprintf(&b, "\nerrors %d\n", r.ErrorCount())
	writeCounts(&b, r.Errors)
	limit := fmtLatency(r.Limit())
	if r.ExpectSpread > 0 {
		limit += fmt.Sprintf(" (--expect-spread %v + %v)", r.ExpectSpread, FailoverLimit)
	}
	if r.Failed() {
		fmt.Fprintf(&b, "\nFAILED: not every session was told 1012 within %s of detection\n", limit)
	} else {
		fmt.Fprintf(&b, "\nOK: every session told 1012 within %s of detection\n", limit)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtSeconds is fmtLatency with milliseconds kept past a second.
func fmtSeconds(d time.Duration) string {
	if d < time.Second {
		return fmtLatency(d)
	}
	return fmt.Sprintf("%.3fs", d.Seconds())
}

// fmtSigned is fmtSeconds for a duration that may be negative (a Close
// stamped before tether's own "since").
func fmtSigned(d time.Duration) string {
	if d < 0 {
		return "-" + fmtSeconds(-d)
	}
	return fmtSeconds(d)
}

// failoverJSON is the object of FailoverReport.WriteJSON.
type failoverJSON struct {
	Target           string           `json:"target"`
	Scenario         string           `json:"scenario"`
	Admin            string           `json:"admin"`
	Node             string           `json:"node"`
	ElapsedS         float64          `json:"elapsed_s"`
	Sessions         int              `json:"sessions"`
	Opened           int              `json:"opened"`
	Told             int              `json:"told_1012"`
	TetherSessions   int64            `json:"tether_ws_sessions"`
	Flip             *time.Time       `json:"flip,omitempty"`
	Detected         *time.Time       `json:"detected,omitempty"`
	DetectionDelayUS int64            `json:"detection_delay_us"`
	NotifyUS         notifyJSON       `json:"notify_after_detection_us"`
	MaxFromFlipUS    int64            `json:"max_from_flip_us"`
	ExpectSpreadUS   int64            `json:"expect_spread_us"`
	LimitUS          int64            `json:"limit_us"`
	Errors           map[string]int64 `json:"errors"`
	ErrorCount       int64            `json:"error_count"`
	Failed           bool             `json:"failed"`
}

type notifyJSON struct {
	Count int64   `json:"count"`
	Min   int64   `json:"min"`
	Mean  float64 `json:"mean"`
	P50   int64   `json:"p50"`
	P90   int64   `json:"p90"`
	P99   int64   `json:"p99"`
	Max   int64   `json:"max"`
}

// WriteJSON prints the report as one JSON object and a newline. Durations
// are in microseconds; min and max are exact, the rest to three
// significant digits.
func (r *FailoverReport) WriteJSON(w io.Writer) error {
	at := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	l := r.Notify
	errs := r.Errors
	if errs == nil {
		errs = map[string]int64{}
	}
	return json.NewEncoder(w).Encode(failoverJSON{
		Target: r.Target, Scenario: ScenarioFailover, Admin: r.Admin, Node: r.Node, ElapsedS: r.Elapsed.Seconds(),
		Sessions: r.Sessions, Opened: r.Opened, Told: r.Told, TetherSessions: r.TetherSessions,
		Flip: at(r.Flip), Detected: at(r.Detected), DetectionDelayUS: r.DetectionDelay().Microseconds(),
		NotifyUS: notifyJSON{
			Count: l.Count, Min: r.First.Microseconds(), Mean: float64(l.Mean) / float64(time.Microsecond),
			P50: l.P50.Microseconds(), P90: l.P90.Microseconds(), P99: l.P99.Microseconds(), Max: r.Last.Microseconds(),
		},
		MaxFromFlipUS: r.MaxFromFlip.Microseconds(), ExpectSpreadUS: r.ExpectSpread.Microseconds(),
		LimitUS: r.Limit().Microseconds(), Errors: errs, ErrorCount: r.ErrorCount(), Failed: r.Failed(),
	})
}
