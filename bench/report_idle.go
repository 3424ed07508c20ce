package bench

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// IdleReport is what the idle scenario measured of the target process.
type IdleReport struct {
	PID       int
	Sessions  int           // sessions asked for
	Opened    int           // sessions opened and echoed once
	Checked   int           // sessions that echoed again after the hold
	SourceIPs int           // client source addresses used
	Hold      time.Duration // how long the sessions stayed idle
	Open      time.Duration // time to open the sessions
	Baseline  ProcStat      // before the first session opened
	Loaded    ProcStat      // with Opened sessions idle, Settle after the last opened
	// HeapBaseline and HeapLoaded are the target's live Go heap in bytes
	// (HeapAlloc after a collection) beside Baseline and Loaded; 0 when not
	// read (LoadConfig.Pprof).
	HeapBaseline, HeapLoaded int64
	// Noun names what was held: "sessions" (WebSockets) or "connections"
	// (idle-http); "" means sessions.
	Noun string
}

// noun is r.Noun, "sessions" by default.
func (r *IdleReport) noun() string {
	if r.Noun == "" {
		return "sessions"
	}
	return r.Noun
}

// HeapPerSessionKiB is the growth of the target's live Go heap per open
// session; 0 without both heap readings.
func (r *IdleReport) HeapPerSessionKiB() float64 {
	if r.Opened == 0 || r.HeapBaseline == 0 || r.HeapLoaded == 0 {
		return 0
	}
	return float64(r.HeapLoaded-r.HeapBaseline) / 1024 / float64(r.Opened)
}

// RSSPerSessionKiB is the growth of the target's RSS per open session; 0
// without a loaded reading.
func (r *IdleReport) RSSPerSessionKiB() float64 {
	if r.Opened == 0 || r.Loaded.RSSKiB == 0 {
		return 0
	}
	return float64(r.Loaded.RSSKiB-r.Baseline.RSSKiB) / float64(r.Opened)
}

// FDsPerSession is the growth of the target's open descriptors per open
// session.
func (r *IdleReport) FDsPerSession() float64 {
	if r.Opened == 0 || r.Loaded.FDs == 0 {
		return 0
	}
	return float64(r.Loaded.FDs-r.Baseline.FDs) / float64(r.Opened)
}

// SessionsAtFDLimit estimates how many idle sessions the target holds
// before its soft limit on open files, at the measured descriptors per
// session; 0 when either is unknown.
func (r *IdleReport) SessionsAtFDLimit() int64 {
	per := r.FDsPerSession()
	if per <= 0 || r.Loaded.FDLimit == 0 {
		return 0
	}
	return int64(float64(r.Loaded.FDLimit-int64(r.Baseline.FDs)) / per)
}

// writeText prints the idle figures as a table for people.
func (r *IdleReport) writeText(b *strings.Builder) {
	fmt.Fprintf(b, "%s %d: %d opened, %d checked after %.1fs idle; opened in %.2fs from %d source address(es)\n\n",
		r.noun(), r.Sessions, r.Opened, r.Checked, r.Hold.Seconds(), r.Open.Seconds(), r.SourceIPs)
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "pid %d\tbaseline\tloaded\tper %s\t\n", r.PID, strings.TrimSuffix(r.noun(), "s"))
	fmt.Fprintf(tw, "RSS KiB\t%d\t%d\t%.1f\t\n", r.Baseline.RSSKiB, r.Loaded.RSSKiB, r.RSSPerSessionKiB())
	if r.HeapBaseline > 0 && r.HeapLoaded > 0 {
		fmt.Fprintf(tw, "Go heap KiB\t%d\t%d\t%.2f\t\n", r.HeapBaseline>>10, r.HeapLoaded>>10, r.HeapPerSessionKiB())
	}
	fmt.Fprintf(tw, "descriptors\t%d\t%d\t%.2f\t\n", r.Baseline.FDs, r.Loaded.FDs, r.FDsPerSession())
	fmt.Fprintf(tw, "threads\t%d\t%d\t\t\n", r.Baseline.Threads, r.Loaded.Threads)
	tw.Flush()
	if n := r.SessionsAtFDLimit(); n > 0 {
		fmt.Fprintf(b, "\nopen-files limit of pid %d: %d, room for about %d idle %s\n", r.PID, r.Loaded.FDLimit, n, r.noun())
	}
}

// idleJSON is the "idle" object of Report.WriteJSON.
type idleJSON struct {
	PID               int          `json:"pid"`
	Sessions          int          `json:"sessions"`
	Opened            int          `json:"opened"`
	Checked           int          `json:"checked"`
	SourceIPs         int          `json:"source_ips"`
	HoldS             float64      `json:"hold_s"`
	OpenS             float64      `json:"open_s"`
	Baseline          procStatJSON `json:"baseline"`
	Loaded            procStatJSON `json:"loaded"`
	RSSPerSessionKiB  float64      `json:"rss_per_session_kib"`
	FDsPerSession     float64      `json:"fds_per_session"`
	SessionsAtFDLimit int64        `json:"sessions_at_fd_limit"`
	HeapBaseline      int64        `json:"heap_baseline_bytes,omitempty"`
	HeapLoaded        int64        `json:"heap_loaded_bytes,omitempty"`
	HeapPerSessionKiB float64      `json:"heap_per_session_kib,omitempty"`
}

type procStatJSON struct {
	RSSKiB  int64 `json:"rss_kib"`
	FDs     int   `json:"fds"`
	Threads int   `json:"threads"`
	FDLimit int64 `json:"fd_limit"`
}

// json is r for Report.WriteJSON; nil for nil.
func (r *IdleReport) json() *idleJSON {
	if r == nil {
		return nil
	}
	return &idleJSON{
		PID: r.PID, Sessions: r.Sessions, Opened: r.Opened, Checked: r.Checked, SourceIPs: r.SourceIPs,
		HoldS: r.Hold.Seconds(), OpenS: r.Open.Seconds(),
		Baseline: procStatJSON(r.Baseline), Loaded: procStatJSON(r.Loaded),
		RSSPerSessionKiB: r.RSSPerSessionKiB(), FDsPerSession: r.FDsPerSession(), SessionsAtFDLimit: r.SessionsAtFDLimit(),
		HeapBaseline: r.HeapBaseline, HeapLoaded: r.HeapLoaded, HeapPerSessionKiB: r.HeapPerSessionKiB(),
	}
}
