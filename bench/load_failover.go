package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/rs/zerolog"
)

// Bounds of the failover scenario.
const (
	// FailoverLimit is how long after tether detects a dead node the last of
	// its clients may be told 1012: a second.
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
	return l.checkSockets()
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
	cfg.Progress = nil       // its lines are the idle scenario's; one line below
	tgt, _ := newTarget(cfg) // checked by Validate
	deadline, _ := f.ctx.Deadline()
	ctx, cancel := context.WithTimeout(f.ctx, failoverOpenBudget)
	defer cancel()
	r := &idleRun{
		ctx:     ctx,
		cfg:     cfg,
		tgt:     tgt,
		log:     f.log,
		wsURL:   tgt.wsURL(PathWS + "?role=echo&session=" + strconv.FormatInt(f.started.UnixNano(), 36) + "-"),
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
