package bench

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Load generators of a comparison (CompareConfig.Generator).
const (
	// GeneratorGo is tether-bench's own load generator, in the comparing
	// process: every scenario.
	GeneratorGo = "go"
	// GeneratorWrk drives http with wrk and ws-echo with wsgen, small C
	// programs in processes of their own; the other scenarios keep
	// GeneratorGo.
	GeneratorWrk = "wrk"
	// GeneratorBoth runs http and ws-echo once with each.
	GeneratorBoth = "both"
)

// Generators are the values --generator takes.
var Generators = []string{GeneratorGo, GeneratorWrk, GeneratorBoth}

// outsideScenario reports the scenarios an outside generator drives.
func outsideScenario(scenario string) bool { return scenario == CompareHTTP || scenario == CompareWS }

// generatorsOf lists the generators that run scenario under the choice
// gen (GeneratorGo, GeneratorWrk or GeneratorBoth), in run order.
func generatorsOf(gen, scenario string) []string {
	switch {
	case !outsideScenario(scenario) || gen == GeneratorGo || gen == "":
		return []string{GeneratorGo}
	case gen == GeneratorWrk:
		return []string{GeneratorWrk}
	}
	return []string{GeneratorGo, GeneratorWrk}
}

// withGenerators gives each slot of order its generators: a slot that two
// generators run becomes two slots, each with a fresh peer process.
func withGenerators(order []slot, gen string) []slot {
	out := make([]slot, 0, len(order))
	for _, s := range order {
		for _, g := range generatorsOf(gen, s.scenario) {
			s.gen = g
			out = append(out, s)
		}
	}
	return out
}

// outsideTools finds wrk and builds wsgen into dir for the slots of order
// that need them. A missing C compiler drops the wsgen slots, with a note
// saying so; a missing wrk is an error.
func (e *peerEnv) outsideTools(ctx context.Context, order []slot, dir string) ([]slot, []string, error) {
	var notes []string
	needs := func(scenario string) bool {
		return slices.ContainsFunc(order, func(s slot) bool { return s.gen == GeneratorWrk && s.scenario == scenario })
	}
	if needs(CompareHTTP) {
		path, err := exec.LookPath("wrk")
		if err != nil {
			return nil, nil, fmt.Errorf("--generator wrk: wrk: %w (install: apt-get update && apt-get install -y wrk)", err)
		}
		e.wrkBin = path
		if e.wrkScript, err = writeWrkScript(dir); err != nil {
			return nil, nil, err
		}
	}
	if needs(CompareWS) {
		bin, err := BuildWSGen(ctx, dir)
		switch {
		case errors.Is(err, ErrNoCC):
			notes = append(notes, "ws-echo with wsgen skipped: "+err.Error())
			order = slices.DeleteFunc(order, func(s slot) bool { return s.gen == GeneratorWrk && s.scenario == CompareWS })
		case err != nil:
			return nil, nil, err
		}
		e.wsgenBin = bin
	}
	return order, notes, nil
}

// cookiesFor are the Cookie values that reach the nodes behind peer: each
// node's name in turn, as the harness's own generator ends up sending
// after its first answer; direct has one node only.
func (e *peerEnv) cookiesFor(peer string) []string {
	nodes := e.nodes
	if peer == PeerDirect {
		nodes = nodes[:1]
	}
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = e.cookie + "=" + n.Name
	}
	return out
}

// runFigures is what a generator measured of one run, as runSlot needs it.
type runFigures struct {
	ops           int64
	elapsed       time.Duration
	perSecond     float64
	p50, p90, p99 time.Duration
	errors        int64
	genCPU        time.Duration // the outside generator's CPU time; 0 for GeneratorGo
}

// runOutside runs the outside generator of s's scenario against addr.
func runOutside(ctx context.Context, cfg CompareConfig, e *peerEnv, s slot, addr string) (runFigures, error) {
	switch s.scenario {
	case CompareHTTP:
		r, err := wrkRun{Bin: e.wrkBin, Script: e.wrkScript, Addr: addr, Conns: cfg.Conns, Duration: cfg.Duration,
			Bytes: cfg.ResourceBytes, Cookies: e.cookiesFor(s.peer), CPUs: e.loadCPUs}.run(ctx)
		return runFigures{r.Requests, r.Elapsed, r.PerSecond, r.P50, r.P90, r.P99, r.Errors(), r.CPU}, err
	case CompareWS:
		r, err := wsgenRun{Bin: e.wsgenBin, Addr: addr, Sessions: cfg.Sessions, MsgBytes: cfg.MessageBytes,
			Duration: cfg.Duration, Cookies: e.cookiesFor(s.peer), CPUs: e.loadCPUs}.run(ctx)
		return runFigures{r.Messages, r.Elapsed, r.PerSecond, r.P50, r.P90, r.P99, r.Errors(), r.CPU}, err
	}
	return runFigures{}, fmt.Errorf("no outside generator for %s", s.scenario)
}

// startCounting starts counting the system calls of pr's processes; nil
// when they are not counted (--syscalls=false, or no perf events here).
func startCounting(e *peerEnv, pr *peerRun, log zerolog.Logger) *syscallCounter {
	if e.perfErr != nil {
		return nil
	}
	c, err := startSyscallCounter(pr.measured)
	if err == nil {
		if err = c.enable(); err != nil {
			_, _ = c.stop()
		}
	}
	if err != nil {
		log.Warn().Err(err).Str("peer", pr.peer).Msg("count system calls")
		return nil
	}
	return c
}

// finishCounting stops c and returns the count per op; 0 when not
// counted.
func finishCounting(c *syscallCounter, ops int64, log zerolog.Logger) float64 {
	if c == nil {
		return 0
	}
	n, err := c.stop()
	if err != nil {
		log.Warn().Err(err).Msg("count system calls")
		return 0
	}
	if ops <= 0 {
		return 0
	}
	return float64(n) / float64(ops)
}

// perOp is seconds of CPU per op as a duration; 0 without ops.
func perOp(cpuSeconds float64, ops int64) time.Duration {
	if ops <= 0 {
		return 0
	}
	return time.Duration(cpuSeconds / float64(ops) * float64(time.Second))
}

// share is part ÷ whole, 0 when whole is not positive.
func share(part, whole float64) float64 {
	if whole <= 0 {
		return 0
	}
	return part / whole
}

// generatorNote describes the generators of a comparison for the table's
// notes.
func (c *Comparison) generatorNote() string {
	var b strings.Builder
	b.WriteString("generator go: tether-bench's own load generator, in the comparing process")
	if c.Config.Generator != GeneratorGo {
		fmt.Fprintf(&b, "; wrk: http by %s (-t%d -c%d --latency, a Lua script giving each wrk thread one node's cookie in turn), "+
			"ws-echo by wsgen (C, one epoll thread, compiled with %s -O2; %d sessions of one masked binary message in flight)",
			c.Machine.Wrk, min(wrkThreads, c.Config.Conns), c.Config.Conns, c.Machine.CC, c.Config.Sessions)
	}
	b.WriteString(". Every generator shares the machine's CPUs with the peer. ")
	b.WriteString("CPU/op: the peer's CPU time (utime+stime of /proc/PID/stat) over the run ÷ requests or messages; " +
		"in parentheses the kernel's share of it (stime ÷ utime+stime): system calls and the TCP work they do. ")
	if c.SyscallsNote == "" {
		fmt.Fprintf(&b, "syscalls/op: system calls the peer's processes entered over the run (perf events on the tracepoint %s, "+
			"what perf stat -e %s counts, on every thread, inherited by threads created during the run) ÷ requests or messages.\n",
			syscallEvent, syscallEvent)
	} else {
		fmt.Fprintf(&b, "syscalls/op: n/a (%s).\n", c.SyscallsNote)
	}
	return b.String()
}
