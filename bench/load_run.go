package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// opKind is a kind of operation a run measures; each has its latency
// histogram and its line in the report.
type opKind int

const (
	opHTTP      opKind = iota // GET of a resource: send to last body byte
	opWS                      // WebSocket message: relayed customer → agent, or echoed
	opPoll                    // long-poll message customer → agent
	opSnapshot                // DOM snapshot message (WebSocket or long poll)
	opUpload                  // big upload, to the node's checksum answer
	opDownload                // big download, to its last byte
	opHandshake               // TCP connect, TLS handshake and one small GET
	numOps
)

// opNames name the kinds in reports.
var opNames = [numOps]string{"http", "ws", "poll", "snapshot", "upload", "download", "handshake"}

// scenarioOps are the operations of scenario.
func (c LoadConfig) scenarioOps() []opKind {
	var ops []opKind
	switch c.Scenario {
	case ScenarioHTTP:
		ops = []opKind{opHTTP}
	case ScenarioCobrowse, ScenarioWS, ScenarioWSEcho:
		ops = []opKind{opWS}
	case ScenarioMixed:
		ops = []opKind{opHTTP, opWS}
	case ScenarioLongPoll:
		ops = []opKind{opPoll}
	case ScenarioBig:
		ops = []opKind{opUpload, opDownload}
	case ScenarioTLSHandshake:
		ops = []opKind{opHandshake}
	}
	if c.SnapshotEvery > 0 && (slices.Contains(ops, opWS) || slices.Contains(ops, opPoll)) {
		ops = append(ops, opSnapshot)
	}
	return ops
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
	switch cfg.Scenario {
	case ScenarioIdle, ScenarioIdleHTTP:
		return runIdle(ctx, cfg, log)
	case ScenarioFailover:
		return nil, errors.New("--scenario failover: needs --admin, --kill-node and --node-url (RunFailover)")
	}
	r := newRun(ctx, cfg, log)
	var workers []*workerStats
	var wg sync.WaitGroup
	start := func(n int, loop func(id int, stats *workerStats) func()) {
		for i := range n {
			stats := r.newStats()
			workers = append(workers, stats)
			wg.Go(loop(i, stats))
		}
	}
	if cfg.Scenario == ScenarioBig {
		if err := r.prepareBig(); err != nil {
			return nil, err
		}
	}
	switch cfg.Scenario {
	case ScenarioHTTP, ScenarioMixed:
		start(cfg.Conns, func(i int, s *workerStats) func() { return (&httpWorker{run: r, id: i, stats: s}).loop })
	case ScenarioBig:
		start(cfg.Conns, func(i int, s *workerStats) func() { return (&bigWorker{run: r, id: i, stats: s}).loop })
	case ScenarioTLSHandshake:
		start(cfg.Conns, func(i int, s *workerStats) func() { return (&handshakeWorker{run: r, id: i, stats: s}).loop })
	}
	switch cfg.Scenario {
	case ScenarioCobrowse, ScenarioWS, ScenarioMixed, ScenarioWSEcho:
		echo := cfg.Scenario == ScenarioWSEcho
		start(cfg.Sessions, func(i int, s *workerStats) func() {
			return (&sessionWorker{run: r, id: i, stats: s, echo: echo}).loop
		})
	case ScenarioLongPoll:
		start(cfg.Sessions, func(i int, s *workerStats) func() { return (&pollWorker{run: r, id: i, stats: s}).loop })
	}
	log.Info().Str("target", cfg.Target).Str("scenario", cfg.Scenario).Str("duration", cfg.Duration.String()).
		Int("conns", cfg.Conns).Int("sessions", cfg.Sessions).Float64("rate", cfg.Rate).Msg("load started")
	stop := make(chan struct{})
	var pwg sync.WaitGroup
	if cfg.Progress != nil {
		pwg.Go(func() { r.progressLoop(stop) })
	}
	wg.Wait()
	close(stop)
	pwg.Wait()
	rep := r.report(r.clock.now(), workers)
	log.Info().Int64("errors", rep.ErrorCount()).Int64("sticky_violations", rep.StickyViolations).Msg("load done")
	return rep, nil
}

// run is the state shared by the workers of one RunLoad.
type run struct {
	ctx      context.Context
	cfg      LoadConfig
	tgt      target
	log      zerolog.Logger
	prefix   string    // makes session ids unique to the run
	start    time.Time // the run's start; clock counts from it
	clock    clock
	end      time.Time // no operation starts after end
	hardEnd  time.Time // every deadline is at most hardEnd
	lat      [numOps]*latencies
	failures atomic.Int64 // errors so far, for progress lines
	big      bigPlan      // the big scenario's sizes and checksum
}

// newRun starts the clock of a run of cfg (after defaults and Validate).
func newRun(ctx context.Context, cfg LoadConfig, log zerolog.Logger) *run {
	tgt, _ := newTarget(cfg) // checked by Validate
	start := time.Now()
	r := &run{
		ctx:     ctx,
		cfg:     cfg,
		tgt:     tgt,
		log:     log,
		prefix:  strconv.FormatInt(start.UnixNano(), 36),
		start:   start,
		clock:   wallClock{start: start},
		end:     start.Add(cfg.Duration),
		hardEnd: start.Add(cfg.Duration + cfg.Timeout + time.Second),
	}
	for _, k := range cfg.scenarioOps() {
		r.lat[k] = newLatencies(timelineInterval(cfg.Duration))
	}
	return r
}

// running reports whether new operations may start.
func (r *run) running() bool {
	return r.ctx.Err() == nil && r.clock.now() < r.cfg.Duration
}

// deadline is the deadline of an operation starting now.
func (r *run) deadline() time.Time {
	return r.deadlineAt(time.Now())
}

// deadlineAt is the deadline of an operation due at t: Timeout later, at
// most hardEnd.
func (r *run) deadlineAt(t time.Time) time.Time {
	d := t.Add(r.cfg.Timeout)
	if d.After(r.hardEnd) {
		return r.hardEnd
	}
	return d
}

// record accounts one operation of kind by worker that started at start
// (run clock, see tick) and moved n bytes; its latency runs until now.
func (r *run) record(k opKind, worker int, stats *workerStats, start time.Duration, n int) {
	now := r.clock.now()
	r.lat[k].record(worker, now, now-start)
	stats.ops[k]++
	stats.bytes[k] += int64(n)
	stats.outage.ok(now)
}

// pause waits a little after a failure, so that a dead target is not
// hammered; it returns early when the run ends.
func (r *run) pause() {
	sleepCtx(r.ctx, min(50*time.Millisecond, time.Until(r.end)))
}

// sleepCtx waits d, or until ctx ends; it reports whether ctx is still
// live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// progressLoop prints a line a second to cfg.Progress until stop.
func (r *run) progressLoop(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last [numOps]int64
	lastAt := r.clock.now()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := r.clock.now()
		var b strings.Builder
		fmt.Fprintf(&b, "load %s %.0fs/%v:", r.cfg.Scenario, now.Seconds(), r.cfg.Duration)
		for k, l := range r.lat {
			if l == nil {
				continue
			}
			n := l.count.Load()
			fmt.Fprintf(&b, " %s %d (%.0f/s),", opNames[k], n, float64(n-last[k])/(now-lastAt).Seconds())
			last[k] = n
		}
		fmt.Fprintf(&b, " errors %d\n", r.failures.Load())
		lastAt = now
		_, _ = r.cfg.Progress.Write([]byte(b.String()))
	}
}

// workerStats are the counters of one worker; only that worker writes them
// while the run lasts, and report reads them after.
type workerStats struct {
	ops, bytes [numOps]int64
	errors     map[string]int64
	nodes      map[string]*NodeReport
	sticky     stickiness
	live       *atomic.Int64 // the run's error count, for progress lines; nil for none
	tls        *TLSInfo      // what the first TLS connection negotiated; nil before
	outage     outages       // from each failure to the next success (load_reconnect.go)
}

func newWorkerStats() *workerStats {
	return &workerStats{errors: make(map[string]int64), nodes: make(map[string]*NodeReport)}
}

// newStats returns a worker's counters whose errors show in progress lines.
func (r *run) newStats() *workerStats {
	s := newWorkerStats()
	s.live = &r.failures
	s.outage.clock = r.clock
	return s
}

func (s *workerStats) fail(kind string) { s.failN(kind, 1) }

// failN counts n failures of kind.
func (s *workerStats) failN(kind string, n int64) {
	s.errors[kind] += n
	if s.live != nil {
		s.live.Add(n)
	}
	s.outage.fail()
}

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

// merge adds the counters of workers to rep: errors, stickiness and the
// per-node summary.
func (rep *Report) merge(workers []*workerStats) {
	nodes := make(map[string]*NodeReport)
	for _, w := range workers {
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
	rep.Nodes = sortedNodes(nodes)
}

// report merges the workers' counters.
func (r *run) report(elapsed time.Duration, workers []*workerStats) *Report {
	rep := &Report{
		Target:   r.cfg.Target,
		Scenario: r.cfg.Scenario,
		Elapsed:  elapsed,
		Rate:     r.cfg.Rate,
		Errors:   make(map[string]int64),
	}
	rep.merge(workers)
	rep.Reconnect = reconnectReport(r.start, workers)
	secs := elapsed.Seconds()
	for k, l := range r.lat {
		if l == nil {
			continue
		}
		op := &OpReport{}
		for _, w := range workers {
			op.Ops += w.ops[k]
			op.Bytes += w.bytes[k]
		}
		op.PerSecond = float64(op.Ops) / secs
		op.hist, op.Timeline = l.merged()
		op.Latency = summarize(op.hist)
		*rep.opField(opKind(k)) = op
	}
	for _, w := range workers {
		if rep.TLS == nil && w.tls != nil {
			rep.TLS = w.tls
		}
	}
	return rep
}
