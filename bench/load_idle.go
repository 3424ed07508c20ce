package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// Bounds of the idle scenario.
const (
	// MaxIdleSessions keeps the load process's sockets (one per session)
	// under the 20,000 descriptors a process may open on the bench machine;
	// more sessions need several load processes.
	MaxIdleSessions = 18_000
	// MaxSourceIPs bounds SourceIPs: 127.0.0.1..127.0.0.250.
	MaxSourceIPs = 250
	// MaxIdleConcurrency bounds Concurrency.
	MaxIdleConcurrency = 1024
	// idleFDMargin is what the load process keeps for itself (listeners,
	// the cookie GETs, the runtime) beside one socket per session.
	idleFDMargin = 100
	// idleSlack bounds an idle run beyond its hold: opening, checking and
	// closing the sessions all fit in it, or the run ends with errors.
	idleSlack = 3 * time.Minute
	// maxIdleFailures stops the opening once so many sessions failed: the
	// target is not taking them, and each failure may cost a Timeout.
	maxIdleFailures = 100
	// maxCookieGETs bounds the GETs that collect the nodes' cookies.
	maxCookieGETs = 8
	// idleBaselinePause lets the target close the connection of the
	// cookie GETs before its baseline is read.
	idleBaselinePause = 250 * time.Millisecond
)

// idleDefaults fills in the zero values of the idle fields.
func (c LoadConfig) idleDefaults() LoadConfig {
	if c.Hold == 0 {
		c.Hold = 10 * time.Second
	}
	if c.Settle == 0 {
		c.Settle = 2 * time.Second
	}
	c.Settle = min(c.Settle, c.Hold)
	if c.SourceIPs == 0 {
		c.SourceIPs = 1
	}
	if c.Concurrency == 0 {
		c.Concurrency = 64
	}
	return c
}

// validateIdle checks the idle fields of c, after defaults.
func (c LoadConfig) validateIdle() error {
	switch {
	case c.Sessions < 0 || c.Sessions > MaxIdleSessions:
		return fmt.Errorf("--sessions %d: want 1..%d (one client socket each in this process, "+
			"under the 20,000 descriptors a process may open; run several load processes for more)",
			c.Sessions, MaxIdleSessions)
	case c.PID <= 0:
		return fmt.Errorf("--pid %d: want the process id of the target (tether)", c.PID)
	case c.Hold < 0 || c.Hold > MaxLoadDuration:
		return fmt.Errorf("--hold %v: want 0 < d <= %v", c.Hold, MaxLoadDuration)
	case c.Settle < 0:
		return fmt.Errorf("--settle %v: want > 0", c.Settle)
	case c.SourceIPs < 0 || c.SourceIPs > MaxSourceIPs:
		return fmt.Errorf("--source-ips %d: want 1..%d", c.SourceIPs, MaxSourceIPs)
	case c.Concurrency < 0 || c.Concurrency > MaxIdleConcurrency:
		return fmt.Errorf("--concurrency %d: want 1..%d", c.Concurrency, MaxIdleConcurrency)
	case c.Scenario == ScenarioIdleHTTP && strings.HasPrefix(c.Target, "https:"):
		return fmt.Errorf("--target %q: the %s scenario holds plain HTTP connections: want an http:// target", c.Target, c.Scenario)
	}
	if c.Pprof != "" {
		if u, err := url.Parse(c.Pprof); err != nil || u.Scheme != "http" || CheckLoopback(u.Host) != nil {
			return fmt.Errorf("--pprof %q: want the http:// URL of the target's admin listener on loopback, e.g. http://127.0.0.1:9090", c.Pprof)
		}
	}
	return c.checkSockets()
}

// checkSockets checks that the Sessions client sockets of an idle or
// failover run fit this process's descriptors and the ephemeral ports of
// SourceIPs source addresses.
func (c LoadConfig) checkSockets() error {
	if c.SourceIPs > 1 {
		tgt, _ := newTarget(c) // checked by Validate
		if ip := net.ParseIP(tgt.host); tgt.host != "localhost" && (ip == nil || ip.To4() == nil) {
			return fmt.Errorf("--source-ips %d: 127.0.0.x sources need an IPv4 target, not %s", c.SourceIPs, tgt.host)
		}
	}
	if limit := fileLimit(); limit > 0 && uint64(c.Sessions+idleFDMargin) > limit {
		return fmt.Errorf("--sessions %d: this process may open %d descriptors (RLIMIT_NOFILE) and holds one per session: "+
			"want at most %d, or several load processes", c.Sessions, limit, int(limit)-idleFDMargin)
	}
	// Sockets bound to a source address share its ephemeral ports; keep a
	// tenth of them for everything else on the machine.
	if ports := ephemeralPorts(); ports > 0 {
		perIP := ports * 9 / 10
		if need := (c.Sessions + perIP - 1) / perIP; need > c.SourceIPs {
			return fmt.Errorf("--source-ips %d: %d sessions need at least %d source addresses (%d ephemeral ports each)",
				c.SourceIPs, c.Sessions, need, ports)
		}
	}
	return nil
}

// idleRun is the state of one idle scenario run. The idle scenario holds
// WebSockets (conns); idle-http holds plain keep-alive connections (plain).
type idleRun struct {
	ctx     context.Context // ends at hardEnd
	cfg     LoadConfig
	tgt     target
	log     zerolog.Logger
	wsURL   string // the URL of session i is wsURL + i
	hardEnd time.Time
	cookies []idleCookie        // the nodes' cookies; session i carries cookies[i%len]
	dialers []*websocket.Dialer // one per source address; session i uses dialers[i%len]
	conns   []*websocket.Conn   // session i, nil if it failed; written by the worker that owns i
	// idle-http: the same, with plain connections.
	netDialers []*net.Dialer
	plain      []net.Conn
	requests   [][]byte     // the GET of connection i is requests[i%len(cookies)]
	next       atomic.Int64 // next session index of the current phase
	prog       *progress    // of the current phase
}

// isHTTP reports an idle-http run.
func (r *idleRun) isHTTP() bool { return r.cfg.Scenario == ScenarioIdleHTTP }

// noun names what the run holds idle.
func (r *idleRun) noun() string {
	if r.isHTTP() {
		return "connections"
	}
	return "sessions"
}

// idleCookie is a node's stickiness cookie value and the node's name.
type idleCookie struct {
	value, node string
}

// idleWorker opens or checks sessions, one at a time; several run at once.
type idleWorker struct {
	run   *idleRun
	check bool // checks and closes open sessions, instead of opening them
	stats *workerStats
	// idle-http: the reader and answer of the worker's GETs, borrowed by
	// each connection in turn.
	br   *bufio.Reader
	resp *fasthttp.Response
}

func (w *idleWorker) loop() {
	if w.check {
		w.checkLoop()
	} else {
		w.openLoop()
	}
}

// runIdle runs the idle scenario of cfg (after defaults and Validate):
//
//  1. a few GETs without cookie collect the nodes' stickiness cookies;
//  2. the target's resources are read (baseline);
//  3. Sessions echo WebSockets open, Concurrency at a time, each carrying
//     the cookie of the next node in turn, and echo one message (idle-http:
//     Sessions keep-alive connections open, and each GETs one resource);
//  4. Settle later, with every session idle, the target is read again;
//  5. Hold after the last opened, each session echoes (GETs) again and
//     closes.
//
// The target is first warmed up (warmUp) before step 2. The target's
// RSS and descriptors are read from /proc; with Pprof, its live Go heap
// too: before its RSS at the baseline (the collections it forces belong
// there), after it when loaded. A session that fails anywhere is an error
// of the report.
func runIdle(ctx context.Context, cfg LoadConfig, log zerolog.Logger) (*Report, error) {
	if _, err := ReadProcStat(cfg.PID); err != nil {
		return nil, fmt.Errorf("--pid %d: %w", cfg.PID, err)
	}
	start := time.Now()
	tgt, _ := newTarget(cfg) // checked by Validate
	hardEnd := start.Add(cfg.Hold + idleSlack)
	ctx, cancel := context.WithDeadline(ctx, hardEnd)
	defer cancel()
	r := &idleRun{
		ctx:     ctx,
		cfg:     cfg,
		tgt:     tgt,
		log:     log,
		wsURL:   tgt.wsURL(PathWS + "?role=echo&session=" + strconv.FormatInt(start.UnixNano(), 36) + "-"),
		hardEnd: hardEnd,
	}
	if r.isHTTP() {
		r.plain = make([]net.Conn, cfg.Sessions)
		r.netDialers = r.newNetDialers()
	} else {
		r.conns = make([]*websocket.Conn, cfg.Sessions)
		r.dialers = r.newDialers()
	}
	idle := &IdleReport{PID: cfg.PID, Sessions: cfg.Sessions, SourceIPs: cfg.SourceIPs, Noun: r.noun()}
	own := newWorkerStats() // the cookie GETs and the run's own errors
	workers := []*workerStats{own}
	report := func() *Report { return r.report(time.Since(start), idle, workers) }

	r.cookies = r.collectCookies(own)
	if len(r.cookies) == 0 {
		own.fail("idle_no_cookie")
		return report(), nil
	}
	if r.isHTTP() {
		r.requests = r.newRequests()
	}
	workers = append(workers, r.warmUp()...)
	r.sleep(idleBaselinePause)
	// The heap is read first: the collections it forces are the harness's,
	// and what they cost the target belongs to its baseline.
	var err error
	if cfg.Pprof != "" {
		if idle.HeapBaseline, err = r.readHeap(); err != nil {
			own.fail("heap")
			log.Error().Err(err).Msg("baseline heap reading")
		}
	}
	base, err := ReadProcStat(cfg.PID)
	if err != nil {
		own.fail("procstat")
		log.Error().Err(err).Msg("baseline reading")
		return report(), nil
	}
	idle.Baseline = base
	log.Info().Str("target", cfg.Target).Int("pid", cfg.PID).Int("sessions", cfg.Sessions).
		Int("nodes", len(r.cookies)).Int64("rss_kib", base.RSSKiB).Int("fds", base.FDs).Msg("idle: opening sessions")

	opened := time.Now()
	workers = append(workers, r.phase("opening", false)...)
	idle.Open = time.Since(opened)
	failed := int(r.prog.failed.Load())
	idle.Opened = int(r.prog.done.Load())
	if missing := cfg.Sessions - idle.Opened - failed; missing > 0 {
		own.errors["idle_not_opened"] += int64(missing)
	}

	held := time.Now()
	r.sleep(cfg.Settle)
	if r.ctx.Err() == nil {
		loaded, err := ReadProcStat(cfg.PID)
		if err != nil {
			own.fail("procstat")
			log.Error().Err(err).Msg("loaded reading")
		}
		idle.Loaded = loaded
		if cfg.Pprof != "" {
			if idle.HeapLoaded, err = r.readHeap(); err != nil {
				own.fail("heap")
				log.Error().Err(err).Msg("loaded heap reading")
			}
		}
		log.Info().Int("open", idle.Opened).Int64("rss_kib", loaded.RSSKiB).Int("fds", loaded.FDs).
			Int("threads", loaded.Threads).Msg("idle: sessions held")
	}
	r.sleep(cfg.Hold - time.Since(held))
	idle.Hold = time.Since(held)

	if r.ctx.Err() != nil {
		// Interrupted or past the cap: nothing is checked, only closed.
		if idle.Opened > 0 {
			own.errors["idle_unchecked"] += int64(idle.Opened)
		}
		for _, c := range r.conns {
			if c != nil {
				_ = c.Close()
			}
		}
		for _, c := range r.plain {
			if c != nil {
				_ = c.Close()
			}
		}
		return report(), nil
	}
	workers = append(workers, r.phase("checking", true)...)
	idle.Checked = int(r.prog.done.Load())
	rep := report()
	log.Info().Int("checked", idle.Checked).Int64("errors", rep.ErrorCount()).Msg("idle: done")
	return rep, nil
}

// newDialers builds one WebSocket dialer per source address. Idle
// sessions borrow a write buffer only while writing.
func (r *idleRun) newDialers() []*websocket.Dialer {
	pool := &sync.Pool{}
	out := make([]*websocket.Dialer, r.cfg.SourceIPs)
	for i := range out {
		var local *net.TCPAddr
		if r.cfg.SourceIPs > 1 {
			local = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}
		}
		out[i] = r.tgt.wsDialer(r.cfg.Timeout, 1024, local)
		out[i].WriteBufferPool = pool
	}
	return out
}

// collectCookies GETs / without a cookie until a node answers twice (or
// maxCookieGETs), and returns the cookie of each node that answered, in
// the order they answered.
func (r *idleRun) collectCookies(stats *workerStats) []idleCookie {
	hc := r.tgt.hostClient(r.cfg.Timeout)
	defer hc.CloseIdleConnections()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	var ck fasthttp.Cookie
	ck.SetKey(r.cfg.Cookie)

	var out []idleCookie
	for range maxCookieGETs {
		req.SetRequestURI(r.tgt.url("/"))
		if err := hc.DoDeadline(req, resp, r.deadline()); err != nil {
			if r.ctx.Err() == nil {
				stats.fail(errKind("http", err))
			}
			return out
		}
		node := string(resp.Header.Peek(HeaderNode))
		stats.node(node).Requests++
		if resp.StatusCode() != fasthttp.StatusOK || !resp.Header.Cookie(&ck) {
			stats.fail("http_status_" + strconv.Itoa(resp.StatusCode()))
			return out
		}
		c := idleCookie{value: string(ck.Value()), node: node}
		for _, seen := range out {
			if seen.value == c.value {
				return out
			}
		}
		out = append(out, c)
	}
	return out
}

// phase runs Concurrency workers over the sessions, opening them or (check)
// checking and closing them, with a progress line a second; it returns the
// workers' counters.
func (r *idleRun) phase(name string, check bool) []*workerStats {
	r.next.Store(0)
	r.prog = &progress{w: r.cfg.Progress, scenario: r.cfg.Scenario, noun: r.noun(), phase: name, total: r.cfg.Sessions, start: time.Now(), stop: make(chan struct{})}
	var pwg sync.WaitGroup
	if r.prog.w != nil {
		pwg.Go(r.prog.loop)
	}
	stats := make([]*workerStats, 0, r.cfg.Concurrency)
	var wg sync.WaitGroup
	for range min(r.cfg.Concurrency, r.cfg.Sessions) {
		w := &idleWorker{run: r, check: check, stats: newWorkerStats()}
		stats = append(stats, w.stats)
		wg.Go(w.loop)
	}
	wg.Wait()
	close(r.prog.stop)
	pwg.Wait()
	return stats
}

// openLoop opens the sessions it takes until none is left, the run ends or
// too many failed.
func (w *idleWorker) openLoop() {
	r := w.run
	for r.ctx.Err() == nil && r.prog.failed.Load() < maxIdleFailures {
		i := int(r.next.Add(1) - 1)
		if i >= r.cfg.Sessions {
			return
		}
		ok := false
		if r.isHTTP() {
			r.plain[i] = w.openHTTP(i)
			ok = r.plain[i] != nil
		} else {
			r.conns[i] = w.open(i)
			ok = r.conns[i] != nil
		}
		switch {
		case ok:
			r.prog.done.Add(1)
		case r.ctx.Err() != nil:
			return // not a failure of the target: not counted
		default:
			r.prog.failed.Add(1)
		}
	}
}

// open opens session i and echoes one message on it; nil if it failed.
func (w *idleWorker) open(i int) *websocket.Conn {
	r := w.run
	ck := r.cookies[i%len(r.cookies)]
	h := http.Header{"Cookie": {r.cfg.Cookie + "=" + ck.value}}
	ctx, cancel := context.WithDeadline(r.ctx, r.deadline())
	defer cancel()
	c, resp, err := r.dialers[i%len(r.dialers)].DialContext(ctx, r.wsURL+strconv.Itoa(i), h)
	node := ""
	if resp != nil {
		node = resp.Header.Get(HeaderNode)
		nr := w.stats.node(node)
		nr.Requests++
		if resp.StatusCode == http.StatusConflict {
			nr.Status409++
			w.stats.sticky.endedN++
		}
		if node != "" && node != ck.node {
			w.stats.sticky.violated++ // an answer without X-Node is the target's own
		}
	}
	if err != nil {
		switch {
		case r.ctx.Err() != nil:
		case resp != nil:
			w.stats.fail("ws_status_" + strconv.Itoa(resp.StatusCode))
		default:
			w.stats.fail(errKind("ws_dial", err))
		}
		return nil
	}
	nr := w.stats.node(node)
	nr.WSSessions++
	if !w.echo(c, i, "ws_echo") {
		_ = c.Close()
		return nil
	}
	nr.WSMessages++
	return c
}

// checkLoop echoes one message on each open session it takes, then closes
// it, until none is left.
func (w *idleWorker) checkLoop() {
	r := w.run
	if r.isHTTP() {
		w.checkHTTPLoop()
		return
	}
	for {
		i := int(r.next.Add(1) - 1)
		if i >= len(r.conns) {
			return
		}
		c := r.conns[i]
		if c == nil {
			continue
		}
		if w.echo(c, i, "ws_check") {
			r.prog.done.Add(1)
			w.stats.node(r.cookies[i%len(r.cookies)].node).WSMessages++
		} else {
			r.prog.failed.Add(1)
		}
		hangUp(c, r.hardEnd)
	}
}

// echo sends a short text message on session i and reads it back; op names
// the errors.
func (w *idleWorker) echo(c *websocket.Conn, i int, op string) bool {
	r := w.run
	msg := "tether-bench idle " + strconv.Itoa(i)
	_ = c.SetWriteDeadline(r.deadline())
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		w.failOp(op+"_write", err)
		return false
	}
	_ = c.SetReadDeadline(r.deadline())
	kind, data, err := c.ReadMessage()
	if err != nil {
		w.failOp(op+"_read", err)
		return false
	}
	_ = c.SetReadDeadline(time.Time{})
	if kind != websocket.TextMessage || string(data) != msg {
		w.stats.fail(op + "_payload")
		return false
	}
	return true
}

func (w *idleWorker) failOp(op string, err error) {
	if w.run.ctx.Err() == nil {
		w.stats.fail(errKind(op, err))
	}
}

// deadline is the deadline of an operation starting now.
func (r *idleRun) deadline() time.Time {
	d := time.Now().Add(r.cfg.Timeout)
	if d.After(r.hardEnd) {
		return r.hardEnd
	}
	return d
}

// sleep waits d, or until the run ends.
func (r *idleRun) sleep(d time.Duration) { sleepCtx(r.ctx, d) }

// report merges the workers' counters.
func (r *idleRun) report(elapsed time.Duration, idle *IdleReport, workers []*workerStats) *Report {
	rep := &Report{
		Target:   r.cfg.Target,
		Scenario: r.cfg.Scenario,
		Elapsed:  elapsed,
		Idle:     idle,
		Errors:   make(map[string]int64),
	}
	rep.merge(workers)
	return rep
}

// progress counts the sessions of one phase and prints a line a second.
type progress struct {
	w            io.Writer
	scenario     string // names the lines
	noun         string // what is counted: sessions or connections
	phase        string
	total        int
	start        time.Time
	done, failed atomic.Int64
	stop         chan struct{} // closed at the end of the phase
}

// loop prints a line every second until stop, and a last one.
func (p *progress) loop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.print()
		case <-p.stop:
			p.print()
			return
		}
	}
}

func (p *progress) print() {
	fmt.Fprintf(p.w, "%s: %s %d/%d %s, %d failed, %.1fs\n",
		p.scenario, p.phase, p.done.Load(), p.total, p.noun, p.failed.Load(), time.Since(p.start).Seconds())
}
