package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Scenarios of RunLoad.
const (
	ScenarioHTTP  = "http"  // keep-alive connections GETting resources
	ScenarioWS    = "ws"    // co-browse sessions relaying WebSocket messages
	ScenarioMixed = "mixed" // both at once
	ScenarioIdle  = "idle"  // echo WebSockets held idle while the target's resources are read
	// ScenarioFailover: echo WebSockets of one node, told by tether that the
	// node died; run by RunFailover, which knows the node.
	ScenarioFailover = "failover"
)

// Bounds of a load run.
const (
	MaxLoadDuration = 24 * time.Hour
	MaxLoadConns    = 10_000
	// MaxLoadSessions keeps a run's sockets (two per session) well under the
	// 20,000 descriptors a process may open.
	MaxLoadSessions = 5_000
	// minMessageBytes holds a message's send time and sequence number.
	minMessageBytes = 16
)

// LoadConfig configures RunLoad. Zero values mean the defaults given.
type LoadConfig struct {
	// Target is the base URL of tether (or of a node), e.g.
	// "http://127.0.0.1:8080". Required; it must be a loopback address.
	Target string
	// Scenario is ScenarioHTTP, ScenarioWS or ScenarioMixed; "" means mixed.
	Scenario string
	// Duration is how long new operations start; 0 means 5s. The run ends at
	// most Timeout (plus a second to close WebSockets) later.
	Duration time.Duration
	// Conns is the number of keep-alive HTTP connections (http, mixed);
	// 0 means 8.
	Conns int
	// Sessions is the number of co-browse sessions, each a customer and an
	// agent WebSocket (ws, mixed); 0 means 20.
	Sessions int
	// ResourceBytes is the size of each GET /cobrowse/resource; 0 means 1024.
	ResourceBytes int
	// MessageBytes is the size of each WebSocket message; 0 means 2048, at
	// least 16.
	MessageBytes int
	// Cookie is the stickiness cookie name; "" means DefaultCookie.
	Cookie string
	// Timeout bounds each operation (request, handshake, message); 0 means 5s.
	Timeout time.Duration

	// The fields below belong to the idle scenario (see RunLoad).

	// PID is the process whose resources are read (tether's); required.
	PID int
	// Hold is how long the sessions stay idle once open; 0 means 10s.
	Hold time.Duration
	// Settle is the wait between the last session opened and the reading of
	// the target; 0 means 2s. It is cut to Hold.
	Settle time.Duration
	// SourceIPs spreads the client sockets over the source addresses
	// 127.0.0.1..127.0.0.K, each with its own ephemeral ports; 0 means 1,
	// which lets the kernel pick the source address.
	SourceIPs int
	// Concurrency is the number of sessions opened (and checked) at once;
	// 0 means 64.
	Concurrency int
	// Progress receives a line a second while sessions open and are
	// checked; nil means none.
	Progress io.Writer
}

// withDefaults fills in zero values.
func (c LoadConfig) withDefaults() LoadConfig {
	if c.Scenario == "" {
		c.Scenario = ScenarioMixed
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
	}
	if c.Conns == 0 {
		c.Conns = 8
	}
	if c.Sessions == 0 {
		c.Sessions = 20
	}
	if c.ResourceBytes == 0 {
		c.ResourceBytes = 1024
	}
	if c.MessageBytes == 0 {
		c.MessageBytes = 2048
	}
	if c.Cookie == "" {
		c.Cookie = DefaultCookie
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Scenario == ScenarioIdle {
		c = c.idleDefaults()
	}
	return c
}

// Validate checks c after defaults, naming the flag of a bad value.
func (c LoadConfig) Validate() error {
	c = c.withDefaults()
	if _, err := targetAddr(c.Target); err != nil {
		return err
	}
	switch c.Scenario {
	case ScenarioHTTP, ScenarioWS, ScenarioMixed, ScenarioIdle, ScenarioFailover:
	default:
		return fmt.Errorf("--scenario %q: want http, ws, mixed, idle or failover", c.Scenario)
	}
	switch {
	case c.Duration < 0 || c.Duration > MaxLoadDuration:
		return fmt.Errorf("--duration %v: want 0 < d <= %v", c.Duration, MaxLoadDuration)
	case c.Conns < 0 || c.Conns > MaxLoadConns:
		return fmt.Errorf("--conns %d: want 1..%d", c.Conns, MaxLoadConns)
	case c.Scenario != ScenarioIdle && (c.Sessions < 0 || c.Sessions > MaxLoadSessions):
		return fmt.Errorf("--sessions %d: want 1..%d", c.Sessions, MaxLoadSessions)
	case c.ResourceBytes < 0 || c.ResourceBytes > MaxResourceBytes:
		return fmt.Errorf("--bytes %d: want 0..%d", c.ResourceBytes, MaxResourceBytes)
	case c.MessageBytes < minMessageBytes || c.MessageBytes > MaxMessageBytes:
		return fmt.Errorf("--msg-bytes %d: want %d..%d", c.MessageBytes, minMessageBytes, MaxMessageBytes)
	case c.Timeout < 0:
		return fmt.Errorf("--timeout %v: want > 0", c.Timeout)
	}
	if c.Scenario == ScenarioIdle {
		return c.validateIdle()
	}
	return nil
}

// targetAddr checks that target is an http URL of a loopback host and
// returns its host:port.
func targetAddr(target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("--target %q: want a URL like http://127.0.0.1:8080", target)
	}
	if u.Scheme != "http" {
		return "", fmt.Errorf("--target %q: want an http:// URL", target)
	}
	if err := CheckLoopback(u.Host); err != nil {
		return "", fmt.Errorf("--target %q: %w", target, err)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(host, port), nil
}

// ErrNotLoopback is returned for addresses off the loopback interface: the
// harness only ever talks to this machine.
var ErrNotLoopback = errors.New("bench: not a loopback address")

// CheckLoopback accepts "host:port" or "host" whose host is "localhost" or
// a loopback IP.
func CheckLoopback(hostport string) error {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q: %w", host, ErrNotLoopback)
}

// ListenLoopback listens on addr ("127.0.0.1:0" picks a port), which must
// be a loopback address.
func ListenLoopback(addr string) (net.Listener, error) {
	if err := CheckLoopback(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, nil
}

// RunLoad drives the scenario of cfg against cfg.Target and reports. It
// returns when the run is over: Duration after its start, or soon after ctx
// ends; every connection it opened is closed by then. Failures of the
// traffic are counted in the report, not returned; the error is for a bad
// configuration.
func RunLoad(ctx context.Context, cfg LoadConfig, log zerolog.Logger) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Scenario == ScenarioIdle {
		return runIdle(ctx, cfg, log)
	}
	if cfg.Scenario == ScenarioFailover {
		return nil, errors.New("--scenario failover: needs --admin, --kill-node and --node-url (RunFailover)")
	}
	addr, _ := targetAddr(cfg.Target) // checked by Validate
	start := time.Now()
	r := &run{
		ctx:     ctx,
		cfg:     cfg,
		addr:    addr,
		log:     log,
		prefix:  strconv.FormatInt(start.UnixNano(), 36),
		start:   start,
		end:     start.Add(cfg.Duration),
		hardEnd: start.Add(cfg.Duration + cfg.Timeout + time.Second),
		httpLat: newLatencies(),
		wsLat:   newLatencies(),
	}
	var workers []*workerStats
	var wg sync.WaitGroup
	if cfg.Scenario == ScenarioHTTP || cfg.Scenario == ScenarioMixed {
		for i := range cfg.Conns {
			w := &httpWorker{run: r, id: i, stats: newWorkerStats()}
			workers = append(workers, w.stats)
			wg.Go(w.loop)
		}
	}
	if cfg.Scenario == ScenarioWS || cfg.Scenario == ScenarioMixed {
		for i := range cfg.Sessions {
			w := &sessionWorker{run: r, id: i, stats: newWorkerStats()}
			workers = append(workers, w.stats)
			wg.Go(w.loop)
		}
	}
	log.Info().Str("target", cfg.Target).Str("scenario", cfg.Scenario).Str("duration", cfg.Duration.String()).
		Int("conns", cfg.Conns).Int("sessions", cfg.Sessions).Msg("load started")
	wg.Wait()
	rep := r.report(time.Since(start), workers)
	log.Info().Int64("errors", rep.ErrorCount()).Int64("sticky_violations", rep.StickyViolations).Msg("load done")
	return rep, nil
}

// run is the state shared by the workers of one RunLoad.
type run struct {
	ctx     context.Context
	cfg     LoadConfig
	addr    string // host:port of the target
	log     zerolog.Logger
	prefix  string    // makes session ids unique to the run
	start   time.Time // carries the monotonic clock of message stamps
	end     time.Time // no operation starts after end
	hardEnd time.Time // every deadline is at most hardEnd
	httpLat *latencies
	wsLat   *latencies
}

// running reports whether new operations may start.
func (r *run) running() bool {
	return r.ctx.Err() == nil && time.Now().Before(r.end)
}

// deadline is the deadline of an operation starting now.
func (r *run) deadline() time.Time {
	d := time.Now().Add(r.cfg.Timeout)
	if d.After(r.hardEnd) {
		return r.hardEnd
	}
	return d
}

// pause waits a little after a failure, so that a dead target is not
// hammered; it returns early when the run ends.
func (r *run) pause() {
	wait := min(50*time.Millisecond, time.Until(r.end))
	if wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.ctx.Done():
	}
}

// workerStats are the counters of one worker; only that worker writes them
// while the run lasts, and report reads them after.
type workerStats struct {
	httpOps, httpBytes int64
	wsOps, wsBytes     int64
	errors             map[string]int64
	nodes              map[string]*NodeReport
	sticky             stickiness
}

func newWorkerStats() *workerStats {
	return &workerStats{errors: make(map[string]int64), nodes: make(map[string]*NodeReport)}
}

func (s *workerStats) fail(kind string) { s.errors[kind]++ }

// node returns the counters of the node named by X-Node; "" (an answer
// without X-Node, e.g. tether's own 502) counts under "-".
func (s *workerStats) node(name string) *NodeReport {
	if name == "" {
		name = "-"
	}
	nr := s.nodes[name]
	if nr == nil {
		nr = &NodeReport{Node: name}
		s.nodes[name] = nr
	}
	return nr
}

// observe accounts one HTTP answer (a request or a WebSocket handshake) of
// a worker's session: per-node counts and stickiness.
func (s *workerStats) observe(status int, node, setCookie string) {
	nr := s.node(node)
	nr.Requests++
	if status == 409 {
		nr.Status409++
	}
	if node != "" {
		s.sticky.observe(status, node, setCookie)
	}
}

// stickiness follows the session of one worker through the answers it gets
// and counts what went wrong.
//
// A 409 from the node means the session ended: the request reached a node
// that does not own it. That is right when the owner died (failover), and a
// sticky violation when the owner is alive. The client cannot ask, but it
// can see: if the node whose session ended answers this client again later,
// it was alive, so its session should not have moved. An answer other than
// 409 from a node other than the session's is a violation too (the cookie
// was lost on the way). A double failover that brings a client back to its
// first, restarted node counts as a violation; runs that kill nodes should
// read the sessions-ended count.
type stickiness struct {
	node     string   // the node owning the session; "" before the first answer
	cookie   string   // the cookie value to send; "" before the first answer
	ended    []string // nodes whose session ended while this client used them
	endedN   int64
	violated int64
}

// maxEnded bounds the nodes remembered in stickiness.ended.
const maxEnded = 16

func (s *stickiness) observe(status int, node, setCookie string) {
	for i, e := range s.ended {
		if e == node {
			s.violated++
			s.ended = append(s.ended[:i], s.ended[i+1:]...)
			break
		}
	}
	if status == 409 {
		s.endedN++
		if s.node != "" && s.node != node && len(s.ended) < maxEnded {
			s.ended = append(s.ended, s.node)
		}
	} else if s.node != "" && node != s.node {
		s.violated++
	}
	s.node = node
	if setCookie != "" {
		s.cookie = setCookie
	} else if s.cookie == "" || status == 409 {
		s.cookie = node
	}
}

// report merges the workers' counters.
func (r *run) report(elapsed time.Duration, workers []*workerStats) *Report {
	rep := &Report{
		Target:   r.cfg.Target,
		Scenario: r.cfg.Scenario,
		Elapsed:  elapsed,
		Errors:   make(map[string]int64),
	}
	var httpOps, httpBytes, wsOps, wsBytes int64
	nodes := make(map[string]*NodeReport)
	for _, w := range workers {
		httpOps += w.httpOps
		httpBytes += w.httpBytes
		wsOps += w.wsOps
		wsBytes += w.wsBytes
		for k, v := range w.errors {
			rep.Errors[k] += v
		}
		for name, nr := range w.nodes {
			sum := nodes[name]
			if sum == nil {
				sum = &NodeReport{Node: name}
				nodes[name] = sum
			}
			sum.add(nr)
		}
		rep.StickyViolations += w.sticky.violated
		rep.SessionsEnded += w.sticky.endedN
	}
	secs := elapsed.Seconds()
	if r.cfg.Scenario != ScenarioWS {
		rep.HTTP = &OpReport{Ops: httpOps, Bytes: httpBytes, PerSecond: float64(httpOps) / secs, Latency: r.httpLat.summary()}
	}
	if r.cfg.Scenario != ScenarioHTTP {
		rep.WS = &OpReport{Ops: wsOps, Bytes: wsBytes, PerSecond: float64(wsOps) / secs, Latency: r.wsLat.summary()}
	}
	rep.Nodes = sortedNodes(nodes)
	return rep
}
