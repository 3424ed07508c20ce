package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/rs/zerolog"
)

// Bounds of the failover scenario.
const (
	// FailoverLimit is how long after tether detects a dead node the last of
	// its clients may be told (DESIGN: within a second of detection).
	FailoverLimit = time.Second
	// MaxFailoverDetect bounds the wait for tether to mark the node down
	// once its health is switched off.
	MaxFailoverDetect = time.Minute
	// MaxExpectSpread bounds FailoverConfig.ExpectSpread.
	MaxExpectSpread = 10 * time.Minute
	// failoverPoll is the period of the GET /status polls.
	failoverPoll = 20 * time.Millisecond
	// failoverUpWait bounds the wait, before any session opens, for tether
	// to see the node up (a previous run may have left it down).
	failoverUpWait = 30 * time.Second
	// failoverGrace is how long past its limit a client is still waited
	// for: a late Close is measured (and fails the run), a missing one is
	// counted as failover_not_told.
	failoverGrace = 2 * time.Second
	// failoverOpenBudget bounds the opening of the sessions.
	failoverOpenBudget = 3 * time.Minute
	// failoverCtlTimeout bounds each request to the admin listener and to
	// the node's health switch.
	failoverCtlTimeout = 2 * time.Second
	// maxFailoverMessages bounds the data messages a session reads while it
	// waits for its Close (an echo session gets none).
	maxFailoverMessages = 16
)

// FailoverConfig configures RunFailover. Zero values mean the defaults
// given.
type FailoverConfig struct {
	// Load carries Target (tether's listener), Sessions (0 means 20),
	// Cookie, Timeout (each handshake and echo), SourceIPs (0 means 1),
	// Concurrency (0 means 64) and Progress (nil means no progress lines).
	// Its Scenario is ScenarioFailover or "".
	Load LoadConfig
	// Admin is the base URL of tether's admin listener, e.g.
	// "http://127.0.0.1:9090". Required; loopback only.
	Admin string
	// Node is the name of the node to kill, as tether's --node names it.
	// Required.
	Node string
	// NodeURL is the base URL of that node itself (not through tether),
	// whose health switch the run flips. Required; loopback only.
	NodeURL string
	// ExpectSpread is tether's --evict-spread: the last client may be told
	// up to ExpectSpread + FailoverLimit after detection. 0 means tether
	// tells them all at once.
	ExpectSpread time.Duration
}

// withDefaults fills in zero values.
func (c FailoverConfig) withDefaults() FailoverConfig {
	c.Load.Scenario = ScenarioFailover
	c.Load = c.Load.withDefaults().idleDefaults()
	c.Admin = strings.TrimRight(c.Admin, "/")
	c.NodeURL = strings.TrimRight(c.NodeURL, "/")
	return c
}

// Validate checks c after defaults, naming the flag of a bad value.
func (c FailoverConfig) Validate() error {
	if c.Load.Scenario != "" && c.Load.Scenario != ScenarioFailover {
		return fmt.Errorf("--scenario %q: RunFailover runs only %s", c.Load.Scenario, ScenarioFailover)
	}
	c = c.withDefaults()
	if err := c.Load.Validate(); err != nil {
		return err
	}
	for _, u := range []struct{ flag, v string }{{"--admin", c.Admin}, {"--node-url", c.NodeURL}} {
		if err := checkLoopbackURL(u.v); err != nil {
			return fmt.Errorf("%s %q: %w", u.flag, u.v, err)
		}
	}
	l := c.Load
	switch {
	case c.Node == "":
		return errors.New("--kill-node is empty: want the name of a node of tether (e.g. CB_Server_1)")
	case c.ExpectSpread < 0 || c.ExpectSpread > MaxExpectSpread:
		return fmt.Errorf("--expect-spread %v: want 0..%v", c.ExpectSpread, MaxExpectSpread)
	case l.SourceIPs < 0 || l.SourceIPs > MaxSourceIPs:
		return fmt.Errorf("--source-ips %d: want 1..%d", l.SourceIPs, MaxSourceIPs)
	case l.Concurrency < 0 || l.Concurrency > MaxIdleConcurrency:
		return fmt.Errorf("--concurrency %d: want 1..%d", l.Concurrency, MaxIdleConcurrency)
	}
	if l.SourceIPs > 1 {
		addr, _ := targetAddr(l.Target) // checked by Load.Validate
		if u, _ := url.Parse("http://" + addr); u.Hostname() != "localhost" && !strings.HasPrefix(u.Hostname(), "127.") {
			return fmt.Errorf("--source-ips %d: 127.0.0.x sources need an IPv4 target, not %s", l.SourceIPs, u.Hostname())
		}
	}
	if limit := fileLimit(); limit > 0 && uint64(l.Sessions+idleFDMargin) > limit {
		return fmt.Errorf("--sessions %d: this process may open %d descriptors (RLIMIT_NOFILE) and holds one per session",
			l.Sessions, limit)
	}
	if ports := ephemeralPorts(); ports > 0 {
		perIP := ports * 9 / 10
		if need := (l.Sessions + perIP - 1) / perIP; need > l.SourceIPs {
			return fmt.Errorf("--source-ips %d: %d sessions need at least %d source addresses (%d ephemeral ports each)",
				l.SourceIPs, l.Sessions, need, ports)
		}
	}
	return nil
}

// checkLoopbackURL accepts an http URL of a loopback host.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "":
		return errors.New("want a URL like http://127.0.0.1:9090")
	case u.Scheme != "http":
		return errors.New("want an http:// URL")
	}
	return CheckLoopback(u.Host)
}

// failoverRun is the state of one RunFailover.
type failoverRun struct {
	ctx     context.Context // ends at hardEnd
	cfg     FailoverConfig
	log     zerolog.Logger
	hc      *http.Client // admin listener and health switch
	errors  map[string]int64
	started time.Time
}

// failoverSession is one echo WebSocket waiting to be told its node died.
// Its reader goroutine owns it; RunFailover reads it after the reader ended.
type failoverSession struct {
	c          *websocket.Conn
	at         time.Time // wall clock when the Close frame arrived; zero without one
	code       int       // the Close frame's status code; 0 without one
	fail       string    // the error kind; "" when told 1012
	unexpected int       // data messages read before the end
}

// RunFailover measures how fast tether tells the clients of a dead node:
//
//  1. the node's health switch is turned on and /status is polled until
//     tether has the node up;
//  2. Sessions echo WebSockets open through tether, Concurrency at a time,
//     each carrying the cookie of the node, and echo one message;
//  3. each session waits for its Close frame, recording its arrival and
//     code, while the node's health is switched off;
//  4. /status is polled every 20 ms until tether has the node down; its
//     "since" is the detection time;
//  5. the sessions get FailoverLimit (plus ExpectSpread) after detection,
//     and a grace, to be told; then the node's health is switched back on.
//
// Times across processes (the switch, tether's "since", the arrivals) are
// compared on the wall clock of this machine. A session not told 1012 is
// an error of the report; the error is for a bad configuration, a node
// tether does not have, or a switch that is not that node's.
func RunFailover(ctx context.Context, cfg FailoverConfig, log zerolog.Logger) (*FailoverReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	start := time.Now()
	hardEnd := start.Add(failoverUpWait + failoverOpenBudget + MaxFailoverDetect + cfg.ExpectSpread + FailoverLimit + failoverGrace)
	ctx, cancel := context.WithDeadline(ctx, hardEnd)
	defer cancel()
	f := &failoverRun{
		ctx:     ctx,
		cfg:     cfg,
		log:     log,
		hc:      &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}, Timeout: failoverCtlTimeout},
		errors:  make(map[string]int64),
		started: start,
	}
	defer f.hc.CloseIdleConnections()
	rep := &FailoverReport{
		Target: cfg.Load.Target, Admin: cfg.Admin, Node: cfg.Node, Sessions: cfg.Load.Sessions,
		ExpectSpread: cfg.ExpectSpread, TetherSessions: -1, Errors: f.errors,
	}
	defer func() { rep.Elapsed = time.Since(start) }()

	if _, err := f.nodeStatus(); err != nil {
		return nil, err
	}
	if err := f.switchHealth(true); err != nil {
		return nil, err
	}
	if !f.waitUp() {
		return rep, nil
	}

	sessions := f.open()
	rep.Opened = len(sessions)
	if len(sessions) == 0 {
		return rep, nil
	}
	// Readers wait with a deadline past any detection; it is moved closer
	// once tether has the node down.
	far := time.Now().Add(MaxFailoverDetect + cfg.ExpectSpread + FailoverLimit + failoverGrace)
	var wg sync.WaitGroup
	for _, s := range sessions {
		_ = s.c.SetReadDeadline(far)
		wg.Go(s.read)
	}
	if st, err := f.nodeStatus(); err == nil {
		rep.TetherSessions = st.Sessions
	}

	rep.Flip = time.Now().Round(0) // wall clock: compared with tether's
	if err := f.switchHealth(false); err != nil {
		f.fail("health_switch_off")
		log.Error().Err(err).Msg("failover: switch the node's health off")
	} else {
		f.progress("failover: %s health switched off, polling %s/status", cfg.Node, cfg.Admin)
		rep.Detected = f.waitDown()
	}
	wait := time.Now()
	if !rep.Detected.IsZero() {
		f.progress("failover: tether had %s down %.3fs after the switch; waiting for the clients",
			cfg.Node, rep.DetectionDelay().Seconds())
		wait = rep.Detected.Add(rep.Limit() + failoverGrace)
	}
	for _, s := range sessions {
		_ = s.c.NetConn().SetReadDeadline(wait) // safe beside the reader's Read
	}
	wg.Wait()
	if err := f.switchHealth(true); err != nil {
		f.fail("health_switch_on")
		log.Error().Err(err).Msg("failover: switch the node's health back on")
	}
	rep.account(sessions)
	log.Info().Int("told", rep.Told).Int64("errors", rep.ErrorCount()).Msg("failover: done")
	return rep, nil
}

func (f *failoverRun) fail(kind string) { f.errors[kind]++ }

// progress prints one line to Load.Progress, if any.
func (f *failoverRun) progress(format string, args ...any) {
	if w := f.cfg.Load.Progress; w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}

// open opens the sessions sticky to the node with the idle scenario's
// workers, and returns those that opened on it and echoed.
func (f *failoverRun) open() []*failoverSession {
	cfg := f.cfg.Load
	cfg.Progress = nil // its lines are the idle scenario's; one line below
	addr, _ := targetAddr(cfg.Target)
	deadline, _ := f.ctx.Deadline()
	ctx, cancel := context.WithTimeout(f.ctx, failoverOpenBudget)
	defer cancel()
	r := &idleRun{
		ctx:     ctx,
		cfg:     cfg,
		addr:    addr,
		log:     f.log,
		wsURL:   "ws://" + addr + PathWS + "?role=echo&session=" + strconv.FormatInt(f.started.UnixNano(), 36) + "-",
		hardEnd: deadline,
		cookies: []idleCookie{{value: f.cfg.Node, node: f.cfg.Node}},
		conns:   make([]*websocket.Conn, cfg.Sessions),
	}
	r.dialers = r.newDialers()
	opened := time.Now()
	stats := r.phase("opening", false)
	failed := r.prog.failed.Load()
	for _, w := range stats {
		for k, v := range w.errors {
			f.errors[k] += v
		}
		if w.sticky.violated > 0 {
			f.errors["ws_wrong_node"] += w.sticky.violated
		}
	}
	out := make([]*failoverSession, 0, cfg.Sessions)
	for _, c := range r.conns {
		if c != nil {
			out = append(out, &failoverSession{c: c})
		}
	}
	if missing := cfg.Sessions - len(out) - int(failed); missing > 0 {
		f.errors["failover_not_opened"] += int64(missing)
	}
	f.progress("failover: %d/%d sessions open on %s in %.2fs, %d failed",
		len(out), cfg.Sessions, f.cfg.Node, time.Since(opened).Seconds(), failed)
	return out
}

// read reads s until it ends, recording its Close frame; it closes s.
func (s *failoverSession) read() {
	defer s.c.Close()
	s.c.SetCloseHandler(s.onClose)
	for range maxFailoverMessages {
		_, _, err := s.c.ReadMessage()
		if err == nil {
			s.unexpected++
			continue
		}
		var ne interface{ Timeout() bool }
		switch {
		case s.code == websocket.CloseServiceRestart:
		case s.code != 0:
			s.fail = "failover_close_" + strconv.Itoa(s.code)
		case errors.As(err, &ne) && ne.Timeout():
			s.fail = "failover_not_told"
		default:
			s.fail = errKind("failover", err) // e.g. failover_closed: no Close frame
		}
		return
	}
	s.fail = "failover_unexpected_messages"
}

// onClose is s's Close handler, run by its reader when the frame arrives:
// it stamps the arrival first, then answers the Close as the default
// handler does.
func (s *failoverSession) onClose(code int, _ string) error {
	s.at = time.Now().Round(0)
	s.code = code
	msg := websocket.FormatCloseMessage(code, "")
	_ = s.c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	return nil
}

// statusNode is a node's row in tether's GET /status.
type statusNode struct {
	Name     string    `json:"name"`
	State    string    `json:"state"`
	Since    time.Time `json:"since"`
	Sessions int64     `json:"ws_sessions"`
}

// nodeStatus GETs tether's /status and returns the node's row.
func (f *failoverRun) nodeStatus() (statusNode, error) {
	ctx, cancel := context.WithTimeout(f.ctx, failoverCtlTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.cfg.Admin+"/status", nil)
	if err != nil {
		return statusNode{}, fmt.Errorf("--admin %q: %w", f.cfg.Admin, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.hc.Do(req)
	if err != nil {
		return statusNode{}, fmt.Errorf("--admin %q: %w", f.cfg.Admin, err)
	}
	defer resp.Body.Close()
	var st struct {
		Nodes []statusNode `json:"nodes"`
	}
	if resp.StatusCode != http.StatusOK {
		return statusNode{}, fmt.Errorf("--admin %q: GET /status: %s", f.cfg.Admin, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return statusNode{}, fmt.Errorf("--admin %q: GET /status: %w", f.cfg.Admin, err)
	}
	names := make([]string, 0, len(st.Nodes))
	for _, n := range st.Nodes {
		if n.Name == f.cfg.Node {
			return n, nil
		}
		names = append(names, n.Name)
	}
	slices.Sort(names)
	return statusNode{}, fmt.Errorf("--kill-node %q: tether has no such node (it has %s)", f.cfg.Node, strings.Join(names, ", "))
}

// switchHealth turns the node's health endpoint on or off, and checks that
// the switch belongs to the node named (its X-Node).
func (f *failoverRun) switchHealth(up bool) error {
	// Switching back on must happen even when the run was interrupted.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), failoverCtlTimeout)
	defer cancel()
	v := "0"
	if up {
		v = "1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.cfg.NodeURL+PathCtlHealth+"?up="+v, nil)
	if err != nil {
		return fmt.Errorf("--node-url %q: %w", f.cfg.NodeURL, err)
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return fmt.Errorf("--node-url %q: %w", f.cfg.NodeURL, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	switch name := resp.Header.Get(HeaderNode); {
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("--node-url %q: POST %s: %s", f.cfg.NodeURL, PathCtlHealth, resp.Status)
	case name != f.cfg.Node:
		return fmt.Errorf("--node-url %q is node %q, not --kill-node %q", f.cfg.NodeURL, name, f.cfg.Node)
	}
	return nil
}

// waitUp polls /status until tether has the node up (or draining: sticky
// sessions still reach it), at most failoverUpWait.
func (f *failoverRun) waitUp() bool {
	st, ok := f.poll(failoverUpWait, func(st statusNode) bool { return st.State == "up" || st.State == "draining" })
	if !ok {
		f.fail("failover_node_not_up")
		f.log.Error().Str("node", f.cfg.Node).Str("state", st.State).Msg("failover: node not up in tether")
	}
	return ok
}

// waitDown polls /status until tether has the node down, at most
// MaxFailoverDetect, and returns when it went down; zero if it did not.
func (f *failoverRun) waitDown() time.Time {
	st, ok := f.poll(MaxFailoverDetect, func(st statusNode) bool { return st.State == "down" })
	if !ok {
		f.fail("failover_not_detected")
		return time.Time{}
	}
	return st.Since
}

// poll GETs /status every failoverPoll until done accepts the node's row
// or limit passes; a failed GET is counted and polling goes on.
func (f *failoverRun) poll(limit time.Duration, done func(statusNode) bool) (statusNode, bool) {
	end := time.Now().Add(limit)
	t := time.NewTicker(failoverPoll)
	defer t.Stop()
	var st statusNode
	for polls := 0; polls <= int(limit/failoverPoll); polls++ {
		var err error
		st, err = f.nodeStatus()
		switch {
		case err == nil && done(st):
			return st, true
		case err != nil && f.ctx.Err() == nil:
			f.fail("status_error")
			f.log.Warn().Err(err).Msg("failover: GET /status")
		}
		if time.Now().After(end) {
			return st, false
		}
		select {
		case <-t.C:
		case <-f.ctx.Done():
			return st, false
		}
	}
	return st, false
}

// account digests the ended sessions into r.
func (r *FailoverReport) account(sessions []*failoverSession) {
	h := newLatencyHistogram()
	first := true
	for _, s := range sessions {
		if s.unexpected > 0 {
			r.Errors["failover_unexpected_message"] += int64(s.unexpected)
		}
		if s.fail != "" {
			r.Errors[s.fail]++
			continue
		}
		r.Told++
		r.MaxFromFlip = max(r.MaxFromFlip, s.at.Sub(r.Flip))
		if r.Detected.IsZero() {
			continue
		}
		d := s.at.Sub(r.Detected)
		recordLatency(h, d)
		if first || d < r.First {
			r.First = d
		}
		if first || d > r.Last {
			r.Last = d
		}
		first = false
	}
	r.Notify = summarize(h)
}

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
func (r *FailoverReport) ErrorCount() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

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
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		fmt.Fprintf(tw, "  %s\t%d\t\n", k, r.Errors[k])
	}
	tw.Flush()
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
