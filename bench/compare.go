package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Scenarios of a comparison.
const (
	CompareHTTP = ScenarioHTTP   // keep-alive GETs with the sticky cookie
	CompareWS   = ScenarioWSEcho // WebSocket echo round trips
	CompareWSS  = "wss-echo"     // the same through TLS (ECDSA P-256 certificate)
	// CompareTLSRSA and CompareTLSECDSA: new TLS connections a second, each
	// with one GET, against a peer terminating TLS with an RSA-2048 or an
	// ECDSA P-256 certificate (the same files for every peer).
	CompareTLSRSA   = "tls-rsa"
	CompareTLSECDSA = "tls-ecdsa"
	CompareIdle     = ScenarioIdle // memory and descriptors per idle WebSocket session
	// CompareIdleWSS is CompareIdle through the peers' TLS listeners (ECDSA
	// P-256 certificate): what an idle wss session costs.
	CompareIdleWSS = "idle-wss"
	// CompareIdleHTTP: memory and descriptors per idle plain keep-alive
	// connection, each after one GET.
	CompareIdleHTTP = ScenarioIdleHTTP
)

// isIdle reports the idle scenarios: memory per session, not a rate.
func isIdle(scenario string) bool {
	return scenario == CompareIdle || scenario == CompareIdleWSS || scenario == CompareIdleHTTP
}

// Bounds of a comparison.
const (
	MaxCompareRounds = 100
	// compareIdleSettle is the wait between the last idle session opened
	// and the reading of the peer.
	compareIdleSettle = 2 * time.Second
)

// Defaults of CompareConfig.
var (
	DefaultComparePeers = []string{PeerTether, PeerNginx, PeerHAProxy, PeerDirect}
	// KnownPeers are the peers --peers may name.
	KnownPeers              = []string{PeerTether, PeerTetherGo, PeerTetherConnGo, PeerNginx, PeerHAProxy, PeerDirect}
	DefaultCompareScenarios = []string{CompareHTTP, CompareWS, CompareWSS, CompareTLSRSA, CompareTLSECDSA, CompareIdle, CompareIdleWSS, CompareIdleHTTP}
)

// ratioPeers are the peers whose best figure the others are measured
// against; direct is shown for reference only.
var ratioPeers = []string{PeerNginx, PeerHAProxy}

// CompareConfig configures RunCompare. Zero values mean the defaults given.
type CompareConfig struct {
	// TetherBin is tether's binary; "" means bin/tether.
	TetherBin string
	// BenchBin is the tether-bench binary whose `node` command runs the
	// nodes; "" means this process's executable.
	BenchBin string
	// NginxBin and HAProxyBin are looked up in PATH; "" means nginx and
	// haproxy.
	NginxBin, HAProxyBin string
	// Templates is the directory of nginx.conf.tmpl and haproxy.cfg.tmpl;
	// "" means scripts/compare.
	Templates string
	// TetherArgs are added to tether's command line, e.g. --admin ADDR
	// --pprof to profile it during the run.
	TetherArgs []string
	// Peers are compared in this order in every round; nil means
	// DefaultComparePeers.
	Peers []string
	// Scenarios run against each peer in this order; nil means
	// DefaultCompareScenarios.
	Scenarios []string
	// Rounds is the number of rounds; 0 means 3.
	Rounds int
	// Duration is the length of each http, ws-echo, wss-echo and TLS run;
	// 0 means 5s.
	Duration time.Duration
	// Conns is the number of keep-alive connections of http; 0 means 32.
	Conns int
	// TLSConns is the number of clients handshaking at once in the TLS
	// scenarios; 0 means 8.
	TLSConns int
	// Sessions is the number of echo WebSockets of ws-echo; 0 means 32.
	Sessions int
	// ResourceBytes is the body size of each GET; 0 means 1024.
	ResourceBytes int
	// MessageBytes is the size of each echo message; 0 means 256.
	MessageBytes int
	// IdleSessions is the number of idle WebSockets of idle; 0 means 2000.
	IdleSessions int
	// IdleConns is the number of idle keep-alive connections of idle-http;
	// 0 means 4000.
	IdleConns int
	// IdleHold is how long the idle sessions (connections) are held; 0
	// means 5s.
	IdleHold time.Duration
	// Pin is PinNone or PinSplit; "" means PinNone.
	Pin string
	// Dir holds each process's directory; "" means a new temporary
	// directory, removed at the end unless a process failed.
	Dir string
	// Generator is GeneratorGo, GeneratorWrk or GeneratorBoth: who drives
	// http and ws-echo; "" means GeneratorGo.
	Generator string
	// NoSyscalls turns off counting the peer's system calls with perf;
	// false counts them when perf can.
	NoSyscalls bool
	// Progress receives a line per run; nil means none.
	Progress io.Writer
}

func (c CompareConfig) withDefaults() CompareConfig {
	if c.TetherBin == "" {
		c.TetherBin = "bin/tether"
	}
	if c.NginxBin == "" {
		c.NginxBin = "nginx"
	}
	if c.HAProxyBin == "" {
		c.HAProxyBin = "haproxy"
	}
	if c.Templates == "" {
		c.Templates = "scripts/compare"
	}
	if c.Peers == nil {
		c.Peers = DefaultComparePeers
	}
	if c.Scenarios == nil {
		c.Scenarios = DefaultCompareScenarios
	}
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
	}
	if c.Conns == 0 {
		c.Conns = 32
	}
	if c.TLSConns == 0 {
		c.TLSConns = 8
	}
	if c.Sessions == 0 {
		c.Sessions = 32
	}
	if c.ResourceBytes == 0 {
		c.ResourceBytes = 1024
	}
	if c.MessageBytes == 0 {
		c.MessageBytes = 256
	}
	if c.IdleSessions == 0 {
		c.IdleSessions = 2000
	}
	if c.IdleConns == 0 {
		c.IdleConns = 4000
	}
	if c.IdleHold == 0 {
		c.IdleHold = 5 * time.Second
	}
	if c.Pin == "" {
		c.Pin = PinNone
	}
	if c.Generator == "" {
		c.Generator = GeneratorGo
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c
}

// Validate checks c after defaults, naming the flag of a bad value.
func (c CompareConfig) Validate() error {
	c = c.withDefaults()
	seen := map[string]bool{}
	for _, p := range c.Peers {
		if !slices.Contains(KnownPeers, p) {
			return fmt.Errorf("--peers %q: want some of %s", p, strings.Join(KnownPeers, ", "))
		}
		if seen[p] {
			return fmt.Errorf("--peers: %s twice", p)
		}
		seen[p] = true
	}
	clear(seen)
	for _, s := range c.Scenarios {
		if !slices.Contains(DefaultCompareScenarios, s) {
			return fmt.Errorf("--scenarios %q: want some of %s", s, strings.Join(DefaultCompareScenarios, ", "))
		}
		if seen[s] {
			return fmt.Errorf("--scenarios: %s twice", s)
		}
		seen[s] = true
	}
	switch {
	case len(c.Peers) == 0:
		return fmt.Errorf("--peers: none")
	case len(c.Scenarios) == 0:
		return fmt.Errorf("--scenarios: none")
	case c.Rounds < 1 || c.Rounds > MaxCompareRounds:
		return fmt.Errorf("--rounds %d: want 1..%d", c.Rounds, MaxCompareRounds)
	case c.Duration <= 0 || c.Duration > time.Hour:
		return fmt.Errorf("--duration %v: want 0 < d <= 1h", c.Duration)
	case c.IdleHold <= 0 || c.IdleHold > time.Hour:
		return fmt.Errorf("--idle-hold %v: want 0 < d <= 1h", c.IdleHold)
	case c.IdleSessions < 1 || c.IdleSessions > (peerFileLimit-200)/2:
		// A peer holds two sockets per session under the descriptor limit.
		return fmt.Errorf("--idle-sessions %d: want 1..%d", c.IdleSessions, (peerFileLimit-200)/2)
	case c.IdleConns < 1 || c.IdleConns > min(MaxIdleSessions, peerFileLimit-200):
		// A peer holds one socket per idle connection, this process one.
		return fmt.Errorf("--idle-conns %d: want 1..%d", c.IdleConns, min(MaxIdleSessions, peerFileLimit-200))
	}
	for _, s := range []string{CompareHTTP, CompareWS, CompareTLSRSA} {
		if err := c.loadConfig("127.0.0.1:1", s).Validate(); err != nil {
			return err
		}
	}
	if c.Pin != PinNone && c.Pin != PinSplit {
		return fmt.Errorf("--pin %q: want %s or %s", c.Pin, PinNone, PinSplit)
	}
	if !slices.Contains(Generators, c.Generator) {
		return fmt.Errorf("--generator %q: want %s", c.Generator, strings.Join(Generators, ", "))
	}
	if c.Generator != GeneratorGo {
		// wsgen's own bounds.
		switch {
		case c.Sessions > wsgenMaxSessions:
			return fmt.Errorf("--sessions %d: wsgen takes at most %d", c.Sessions, wsgenMaxSessions)
		case c.MessageBytes > wsgenMaxMessageBytes:
			return fmt.Errorf("--msg-bytes %d: wsgen takes at most %d", c.MessageBytes, wsgenMaxMessageBytes)
		}
	}
	return nil
}

// loadConfig is the LoadConfig of scenario against the peer on addr
// (host:port; its TLS listener for the TLS scenarios).
func (c CompareConfig) loadConfig(addr, scenario string) LoadConfig {
	l := LoadConfig{Target: "http://" + addr, Scenario: scenario, Duration: c.Duration}
	if compareTLS(scenario) {
		// The certificates are this run's own, self-signed.
		l.Target, l.Insecure = "https://"+addr, true
	}
	switch scenario {
	case CompareHTTP:
		l.Conns, l.ResourceBytes = c.Conns, c.ResourceBytes
	case CompareWS, CompareWSS:
		l.Scenario = ScenarioWSEcho
		l.Sessions, l.MessageBytes = c.Sessions, c.MessageBytes
	case CompareTLSRSA, CompareTLSECDSA:
		l.Scenario = ScenarioTLSHandshake
		l.Conns = c.TLSConns
	case CompareIdle, CompareIdleWSS:
		l.Scenario = ScenarioIdle
		l.Sessions, l.Hold, l.Settle = c.IdleSessions, c.IdleHold, min(compareIdleSettle, c.IdleHold)
	case CompareIdleHTTP:
		l.Sessions, l.Hold, l.Settle = c.IdleConns, c.IdleHold, min(compareIdleSettle, c.IdleHold)
	}
	return l
}

// slot is one run of a comparison: a scenario against a peer in a round.
type slot struct {
	round          int // from 1
	peer, scenario string
	gen            string // GeneratorGo or GeneratorWrk (withGenerators)
}

// compareOrder lists the runs: round after round, the peers in their order
// (A B C D A B C D …), each running the scenarios in their order against a
// freshly started process. The node has no TLS: direct skips the TLS
// scenarios.
func compareOrder(peers, scenarios []string, rounds int) []slot {
	out := make([]slot, 0, rounds*len(peers)*len(scenarios))
	for r := 1; r <= rounds; r++ {
		for _, p := range peers {
			for _, s := range scenarios {
				if p == PeerDirect && compareTLS(s) {
					continue
				}
				out = append(out, slot{round: r, peer: p, scenario: s})
			}
		}
	}
	return out
}

// RunCompare starts two nodes, then each peer in turn in front of them,
// and runs the scenarios against it, round after round; it returns the
// figures of every run. The processes it starts are stopped, by their
// PIDs, before it returns. Pinning (PinSplit) moves this process to the
// first CPU for good.
func RunCompare(ctx context.Context, cfg CompareConfig, log zerolog.Logger) (*Comparison, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cpus, err := allowedCPUs()
	if err != nil {
		return nil, err
	}
	plan, err := planPins(cfg.Pin, cpus)
	if err != nil {
		return nil, err
	}
	e, err := cfg.peerEnv(plan)
	if err != nil {
		return nil, err
	}
	cmp := &Comparison{
		Machine:   readMachine(ctx, e),
		Pinning:   plan.String(),
		Workers:   plan.workers,
		Config:    cfg,
		Peers:     cfg.Peers,
		Scenarios: cfg.Scenarios,
		Samples:   make(map[sampleKey][]Sample),
	}
	e.loadCPUs = plan.loadCPUs
	if cfg.NoSyscalls {
		e.perfErr = errors.New("--syscalls=false")
	} else if e.perfErr = checkSyscallCounting(); e.perfErr != nil {
		log.Warn().Err(e.perfErr).Msg("compare: system calls not counted")
	}
	if e.perfErr != nil {
		cmp.SyscallsNote = e.perfErr.Error()
	}
	if plan.loadCPUs != "" {
		cpu, _ := strconv.Atoi(plan.loadCPUs)
		if err := pinSelf(cpu); err != nil {
			return nil, err
		}
	}

	dir, keep := cfg.Dir, true
	if dir == "" {
		if dir, err = os.MkdirTemp("", "tether-compare-"); err != nil {
			return nil, err
		}
		keep = false
	}
	defer func() {
		if !keep {
			_ = os.RemoveAll(dir)
		}
	}()
	_ = os.Chmod(dir, 0o755)

	nodeDir := filepath.Join(dir, "nodes")
	if err := os.MkdirAll(nodeDir, 0o755); err != nil {
		return nil, err
	}
	for i := range 2 {
		name := "CB_Server_" + strconv.Itoa(i+1)
		p, addr, err := startNodeProc(e.benchBin, name, nodeDir, plan.loadCPUs, nil)
		if err != nil {
			keep = true
			return nil, err
		}
		defer p.stop()
		e.nodes = append(e.nodes, PeerNode{Name: name, Addr: addr})
		e.nodePIDs = append(e.nodePIDs, p.pid())
	}
	log.Info().Str("dir", dir).Str("pinning", plan.String()).Msg("compare: nodes up")
	if slices.ContainsFunc(cfg.Scenarios, compareTLS) {
		if e.certs, err = writeCompareCerts(filepath.Join(dir, "certs")); err != nil {
			return nil, err
		}
	}

	order := withGenerators(compareOrder(cfg.Peers, cfg.Scenarios, cfg.Rounds), cfg.Generator)
	if order, cmp.Notes, err = e.outsideTools(ctx, order, dir); err != nil {
		return nil, err
	}
	for _, n := range cmp.Notes {
		fmt.Fprintf(cfg.Progress, "compare: %s\n", n)
	}
	fmt.Fprintf(cfg.Progress, "compare: %d runs (%d rounds of %s against %s), about %v\n", len(order), cfg.Rounds,
		strings.Join(cfg.Scenarios, " "), strings.Join(cfg.Peers, " "), cfg.estimate(order).Round(time.Second))
	for _, s := range order {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		workers := plan.workers
		if isIdle(s.scenario) {
			workers = 1 // one process holds every session: nginx's one worker
		}
		pdir := filepath.Join(dir, fmt.Sprintf("r%d-%s-%s", s.round, s.peer, s.scenario))
		pe, pprof, err := e.withPprof(s)
		if err != nil {
			return nil, err
		}
		pr, err := startPeer(ctx, pe, s.peer, workers, pdir, e.certs[s.scenario])
		if err != nil {
			keep = true
			return nil, err
		}
		pr.pprof = pprof
		sample, err := runSlot(ctx, cfg, e, s, pr, log)
		pr.stop()
		if err != nil {
			keep = true
			return nil, fmt.Errorf("round %d, %s, %s: %w", s.round, s.peer, s.scenario, err)
		}
		k := sampleKey{s.scenario, s.peer, s.gen}
		cmp.Samples[k] = append(cmp.Samples[k], sample)
		fmt.Fprintf(cfg.Progress, "round %d/%d %-8s %-8s %-3s %s\n", s.round, cfg.Rounds, s.peer, s.scenario, s.gen, sample.line(s.scenario))
	}
	cmp.Machine.LoadEnd = loadAverage()
	return cmp, nil
}

// peerEnv resolves the binaries of cfg.
func (c CompareConfig) peerEnv(plan pinPlan) (*peerEnv, error) {
	e := &peerEnv{templates: c.Templates, tetherArgs: c.TetherArgs, cookie: DefaultCookie, proxyCPUs: plan.proxyCPUs, cpus: plan.proxyCPUn}
	need := map[string]bool{}
	for _, p := range c.Peers {
		need[p] = true
	}
	need[PeerTether] = need[PeerTether] || need[PeerTetherGo] || need[PeerTetherConnGo]
	var err error
	if e.benchBin = c.BenchBin; e.benchBin == "" {
		if e.benchBin, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find tether-bench for the nodes: %w", err)
		}
	}
	for _, b := range []struct {
		peer, flag, bin string
		out             *string
	}{
		{PeerTether, "--tether-bin", c.TetherBin, &e.tetherBin},
		{PeerNginx, "--nginx-bin", c.NginxBin, &e.nginxBin},
		{PeerHAProxy, "--haproxy-bin", c.HAProxyBin, &e.haproxyBin},
	} {
		if !need[b.peer] {
			continue
		}
		path, err := exec.LookPath(b.bin)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w (install: apt-get update && apt-get install -y nginx haproxy; tether: make build)", b.flag, b.bin, err)
		}
		if *b.out, err = filepath.Abs(path); err != nil {
			return nil, err
		}
	}
	if need[PeerNginx] || need[PeerHAProxy] {
		if e.templates, err = filepath.Abs(c.Templates); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// runSlot runs the scenario of s against pr with its generator and
// digests the figures.
func runSlot(ctx context.Context, cfg CompareConfig, e *peerEnv, s slot, pr *peerRun, log zerolog.Logger) (Sample, error) {
	addr := pr.addr
	if compareTLS(s.scenario) {
		addr = pr.tlsAddr
	}
	lc := cfg.loadConfig(addr, s.scenario)
	quiet := log.Level(max(log.GetLevel(), zerolog.WarnLevel))
	if isIdle(s.scenario) {
		lc.PID = pr.measured[0] // nginx: its one worker
		lc.Pprof = pr.pprof
		rep, err := RunLoad(ctx, lc, quiet)
		if err != nil {
			return Sample{}, err
		}
		return Sample{
			Round:             s.round,
			Errors:            rep.ErrorCount() + rep.StickyViolations,
			KiBPerSession:     rep.Idle.RSSPerSessionKiB(),
			FDsPerSession:     rep.Idle.FDsPerSession(),
			HeapKiBPerSession: rep.Idle.HeapPerSessionKiB(),
		}, nil
	}
	counter := startCounting(e, pr, log)
	mark0, t0 := markContention(pr.pids(), e.nodePIDs), time.Now()
	cpu0, sys0 := pr.cpuSeconds()
	var res runFigures
	var tlsInfo string
	if s.gen == GeneratorWrk {
		var err error
		if res, err = runOutside(ctx, cfg, e, s, addr); err != nil {
			_ = finishCounting(counter, 0, log)
			return Sample{}, err
		}
	} else {
		rep, err := RunLoad(ctx, lc, quiet)
		if err != nil {
			_ = finishCounting(counter, 0, log)
			return Sample{}, err
		}
		op := rep.ops()[0]
		res = runFigures{op.Ops, rep.Elapsed, op.PerSecond, op.Latency.P50, op.Latency.P90, op.Latency.P99,
			rep.ErrorCount() + rep.StickyViolations, 0}
		if rep.TLS != nil {
			tlsInfo = rep.TLS.String()
		}
	}
	cpu1, sys1 := pr.cpuSeconds()
	cpu, sys := cpu1-cpu0, sys1-sys0
	cont := contention(mark0, markContention(pr.pids(), e.nodePIDs), res.genCPU, time.Since(t0))
	syscalls := finishCounting(counter, res.ops, log)
	sample := Sample{
		Round:         s.round,
		PerSecond:     res.perSecond,
		P50:           res.p50,
		P90:           res.p90,
		P99:           res.p99,
		Ops:           res.ops,
		CPUPerOp:      perOp(cpu, res.ops),
		SysShare:      share(sys, cpu),
		SyscallsPerOp: syscalls,
		Errors:        res.errors,
		TLS:           tlsInfo,
		Contention:    cont,
	}
	if res.elapsed > 0 {
		sample.CPU = cpu / res.elapsed.Seconds()
	}
	return sample, nil
}

// withPprof is e for the run of s: an idle-http run against tether also
// turns on its admin listener with Go's profiler, on a free port, whose URL
// it returns, so the run reads tether's Go heap. The others, and a
// tether whose --tether-flags name an admin listener, run as e says ("").
func (e *peerEnv) withPprof(s slot) (*peerEnv, string, error) {
	tether := s.peer == PeerTether || s.peer == PeerTetherGo || s.peer == PeerTetherConnGo
	if s.scenario != CompareIdleHTTP || !tether || slices.Contains(e.tetherArgs, "--admin") {
		return e, "", nil
	}
	addr, err := freePort()
	if err != nil {
		return nil, "", err
	}
	pe := *e
	pe.tetherArgs = append(slices.Clip(e.tetherArgs), "--admin", addr, "--pprof")
	return &pe, "http://" + addr, nil
}

// Estimates of the time of a run, for the line that announces them.
const (
	peerStartCost = 1500 * time.Millisecond // start, wait until ready, stop
	idleOpenCost  = 3 * time.Second         // open and check the idle sessions
)

// estimate is about how long the runs of order take.
func (c CompareConfig) estimate(order []slot) time.Duration {
	var d time.Duration
	for _, s := range order {
		d += peerStartCost
		if isIdle(s.scenario) {
			d += c.IdleHold + idleOpenCost
		} else {
			d += c.Duration
		}
	}
	return d
}
