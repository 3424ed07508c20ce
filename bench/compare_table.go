package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Sample is what one run of a comparison measured.
type Sample struct {
	Round int
	// PerSecond, P50 and P99 are the throughput and latency of http (GETs),
	// ws-echo and wss-echo (round trips) and the TLS scenarios (handshakes).
	PerSecond     float64
	P50, P90, P99 time.Duration
	// CPU is the peer's CPU time over the run, in cores (1 = one CPU busy).
	CPU float64
	// Ops counts the requests, messages or handshakes of the run.
	Ops int64
	// CPUPerOp is the peer's CPU time over the run ÷ Ops; 0 without ops.
	CPUPerOp time.Duration
	// SysShare is the part of that CPU time spent in the kernel (system
	// time ÷ user and system time), 0 to 1; 0 when none was measured.
	SysShare float64
	// SyscallsPerOp is the system calls the peer's processes entered over
	// the run ÷ Ops; 0 when not counted.
	SyscallsPerOp float64
	// Errors counts failed operations and sticky violations.
	Errors int64
	// KiBPerSession and FDsPerSession are the idle scenario's growth of
	// the peer's RSS and descriptors per open session.
	KiBPerSession, FDsPerSession float64
	// HeapKiBPerSession is the idle scenario's growth of the peer's live Go
	// heap per open session; 0 when not read (only tether's is, in
	// idle-http).
	HeapKiBPerSession float64
	// TLS is what the TLS connections negotiated (TLSInfo.String); "" for
	// plain runs.
	TLS string
	// Contention is what other work took of the machine during the run
	// (not measured for the idle scenarios).
	Contention Contention
}

// line is s for a progress line.
func (s Sample) line(scenario string) string {
	if isIdle(scenario) {
		heap := ""
		if s.HeapKiBPerSession != 0 {
			heap = fmt.Sprintf(" (Go heap %.2f KiB)", s.HeapKiBPerSession)
		}
		return fmt.Sprintf("%.2f KiB/session%s, %.2f fds/session, %d errors", s.KiBPerSession, heap, s.FDsPerSession, s.Errors)
	}
	c := s.Contention
	return fmt.Sprintf("%.0f/s p50 %s p90 %s p99 %s cpu %.2f, %s cpu/op, %s syscalls/op, %d errors, outside cpu %s, peer runq wait %s",
		s.PerSecond, fmtLatency(s.P50), fmtLatency(s.P90), fmtLatency(s.P99), s.CPU, fmtCPUPerOp(s.CPUPerOp, s.SysShare),
		fmtSyscalls(s.SyscallsPerOp), s.Errors, fmtOutside(c.Known, c.OutsideCPU, c.Disturbed()), fmtRunq(c.Known, c.RunqWait))
}

// fmtOutside prints a share of the machine's CPU time as a percentage,
// with " !" when a run was disturbed; "n/a" when not known.
func fmtOutside(known bool, share float64, disturbed bool) string {
	if !known {
		return "n/a"
	}
	out := fmt.Sprintf("%.0f%%", share*100)
	if disturbed {
		out += " !"
	}
	return out
}

// fmtRunq prints a run-queue wait per second of run in ms/s; "n/a" when
// not known.
func fmtRunq(known bool, d time.Duration) string {
	if !known {
		return "n/a"
	}
	return fmt.Sprintf("%.1f ms/s", float64(d)/float64(time.Millisecond))
}

// sampleKey names the runs of one scenario against one peer with one
// generator (GeneratorGo or GeneratorWrk).
type sampleKey struct{ scenario, peer, gen string }

// Comparison is the outcome of RunCompare: every run's figures.
type Comparison struct {
	Machine   Machine
	Pinning   string // how processes were pinned, for people
	Workers   int    // workers of each peer in http and ws-echo
	Config    CompareConfig
	Peers     []string
	Scenarios []string
	Samples   map[sampleKey][]Sample // in round order
	// Notes are lines for people under the tables: runs skipped and why.
	Notes []string
	// SyscallsNote says why system calls were not counted; "" when they were.
	SyscallsNote string
}

// median is the median of xs: the middle value, or the mean of the two
// middle values; 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Row is the medians of one scenario and peer over the rounds.
type Row struct {
	Scenario, Peer string
	Generator      string // GeneratorGo or GeneratorWrk
	Runs           int
	PerSecond      float64
	P50, P99       time.Duration
	CPU            float64
	CPUPerOp       time.Duration
	SysShare       float64 // median of the samples' SysShare
	SyscallsPerOp  float64 // 0 when not counted
	Errors         int64   // the sum over the rounds
	KiBPerSession  float64
	FDsPerSession  float64
	HeapKiB        float64 // median of HeapKiBPerSession; 0 when not read
	XPerSecond     float64 // PerSecond ÷ the best peer's; 0 without a peer
	XP50, XP99     float64 // P50, P99 ÷ the best peer's (lowest)
	XKiBPerSession float64 // KiBPerSession ÷ the best peer's (lowest)
	TLS            string  // what the last run's TLS connections negotiated
	// OutsideCPU and RunqWait are the medians of the runs' Contention;
	// ContentionKnown is false when a run's is not known.
	OutsideCPU      float64
	RunqWait        time.Duration
	ContentionKnown bool
	Disturbed       int // runs whose Contention.Disturbed
}

// medianRow digests the samples of one scenario and peer.
func medianRow(scenario, peer, gen string, samples []Sample) Row {
	pick := func(f func(Sample) float64) float64 {
		xs := make([]float64, len(samples))
		for i, s := range samples {
			xs[i] = f(s)
		}
		return median(xs)
	}
	r := Row{Scenario: scenario, Peer: peer, Generator: gen, Runs: len(samples)}
	r.PerSecond = pick(func(s Sample) float64 { return s.PerSecond })
	r.P50 = time.Duration(math.Round(pick(func(s Sample) float64 { return float64(s.P50) })))
	r.P99 = time.Duration(math.Round(pick(func(s Sample) float64 { return float64(s.P99) })))
	r.CPU = pick(func(s Sample) float64 { return s.CPU })
	r.CPUPerOp = time.Duration(math.Round(pick(func(s Sample) float64 { return float64(s.CPUPerOp) })))
	r.SysShare = pick(func(s Sample) float64 { return s.SysShare })
	if !slices.ContainsFunc(samples, func(s Sample) bool { return s.SyscallsPerOp <= 0 }) {
		r.SyscallsPerOp = pick(func(s Sample) float64 { return s.SyscallsPerOp })
	}
	r.KiBPerSession = pick(func(s Sample) float64 { return s.KiBPerSession })
	r.HeapKiB = pick(func(s Sample) float64 { return s.HeapKiBPerSession })
	r.FDsPerSession = pick(func(s Sample) float64 { return s.FDsPerSession })
	r.ContentionKnown = len(samples) > 0
	for _, s := range samples {
		r.Errors += s.Errors
		if s.TLS != "" {
			r.TLS = s.TLS
		}
		r.ContentionKnown = r.ContentionKnown && s.Contention.Known
		if s.Contention.Disturbed() {
			r.Disturbed++
		}
	}
	if r.ContentionKnown {
		r.OutsideCPU = pick(func(s Sample) float64 { return s.Contention.OutsideCPU })
		r.RunqWait = time.Duration(math.Round(pick(func(s Sample) float64 { return float64(s.Contention.RunqWait) })))
	}
	return r
}

// disturbedRuns lists the runs whose outside CPU exceeded disturbedShare,
// in the order of the tables: "http wrk tether round 2 (23%)".
func (c *Comparison) disturbedRuns() []string {
	var out []string
	for _, sc := range c.Scenarios {
		for _, g := range generatorsOf(GeneratorBoth, sc) {
			for _, p := range c.Peers {
				for _, s := range c.Samples[sampleKey{sc, p, g}] {
					if s.Contention.Disturbed() {
						out = append(out, fmt.Sprintf("%s %s %s round %d (%.0f%%)", sc, g, p, s.Round, s.Contention.OutsideCPU*100))
					}
				}
			}
		}
	}
	return out
}

// ratio is x ÷ best, or 0 when there is no best.
func ratio(x, best float64) float64 {
	if best <= 0 {
		return 0
	}
	return x / best
}

// withRatios sets each row's ratios to the best of the rows of ratioPeers
// (highest throughput, lowest latency and memory). Rows of one scenario.
func withRatios(rows []Row) []Row {
	var bestPS, bestP50, bestP99, bestKiB float64
	for _, r := range rows {
		if !slices.Contains(ratioPeers, r.Peer) || r.Runs == 0 {
			continue
		}
		if r.PerSecond > bestPS {
			bestPS = r.PerSecond
		}
		if p := float64(r.P50); p > 0 && (bestP50 == 0 || p < bestP50) {
			bestP50 = p
		}
		if p := float64(r.P99); p > 0 && (bestP99 == 0 || p < bestP99) {
			bestP99 = p
		}
		if k := r.KiBPerSession; k > 0 && (bestKiB == 0 || k < bestKiB) {
			bestKiB = k
		}
	}
	out := slices.Clone(rows)
	for i := range out {
		r := &out[i]
		r.XPerSecond = ratio(r.PerSecond, bestPS)
		r.XP50 = ratio(float64(r.P50), bestP50)
		r.XP99 = ratio(float64(r.P99), bestP99)
		r.XKiBPerSession = ratio(r.KiBPerSession, bestKiB)
	}
	return out
}

// Rows are the medians of every scenario, generator and peer, with their
// ratios to the rows of the same scenario and generator, in the order of
// the scenarios, the generators and the peers.
func (c *Comparison) Rows() []Row {
	var out []Row
	for _, s := range c.Scenarios {
		for _, g := range generatorsOf(GeneratorBoth, s) {
			var rows []Row
			for _, p := range c.Peers {
				if samples := c.Samples[sampleKey{s, p, g}]; len(samples) > 0 {
					rows = append(rows, medianRow(s, p, g, samples))
				}
			}
			out = append(out, withRatios(rows)...)
		}
	}
	return out
}

// fmtRatio prints a ratio to the best peer; "-" without one.
func fmtRatio(x float64) string {
	if x <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", x)
}

// fmtThousands prints x rounded, with thin groups of three digits.
func fmtThousands(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	var b strings.Builder
	for i, d := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return b.String()
}

// writeRows prints line(r) for each row that ran of a scenario keep keeps.
func writeRows(b *strings.Builder, rows []Row, keep func(string) bool, line func(Row) string) {
	for _, r := range rows {
		if keep(r.Scenario) && r.Runs > 0 {
			b.WriteString(line(r))
		}
	}
}

// fmtCPUPerOp prints CPU time per operation in microseconds, with the
// kernel's share of it when known ("30.1µs (70% sys)"); "-" for none.
func fmtCPUPerOp(d time.Duration, sysShare float64) string {
	if d <= 0 {
		return "-"
	}
	us := float64(d) / float64(time.Microsecond)
	if sysShare <= 0 {
		return fmt.Sprintf("%.1fµs", us)
	}
	return fmt.Sprintf("%.1fµs (%.0f%% sys)", us, 100*sysShare)
}

// fmtSyscalls prints system calls per operation; "n/a" when not counted.
func fmtSyscalls(x float64) string {
	if x <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", x)
}

// rateCells are the table cells of r after its throughput: ratio, p50,
// ratio, p99, ratio, peer CPU, CPU per op, system calls per op, errors,
// outside CPU (marked "!" when a run of the row was disturbed), peer
// run-queue wait.
func (r Row) rateCells() string {
	return fmt.Sprintf("%s | %s | %s | %s | %s | %.2f | %s | %s | %d | %s | %s", fmtRatio(r.XPerSecond),
		fmtLatency(r.P50), fmtRatio(r.XP50), fmtLatency(r.P99), fmtRatio(r.XP99), r.CPU,
		fmtCPUPerOp(r.CPUPerOp, r.SysShare), fmtSyscalls(r.SyscallsPerOp), r.Errors,
		fmtOutside(r.ContentionKnown, r.OutsideCPU, r.Disturbed > 0), fmtRunq(r.ContentionKnown, r.RunqWait))
}

// contentionNote explains the contention columns under the tables.
func contentionNote() string {
	return fmt.Sprintf("\noutside CPU: the machine's busy CPU time over the run (/proc/stat: user, nice, system, irq, softirq, steal) "+
		"less the CPU time of the benchmark's processes (the peer's, the nodes', tether-bench's own with its generator, wrk's or wsgen's), "+
		"as a share of all the machine's CPUs over the run (median of the rounds); ! marks a row with a run above %.0f%%. "+
		"peer runq wait: the time the peer's threads waited on a run queue, ready to run (field 2 of /proc/PID/task/*/schedstat), "+
		"per second of run (median of the rounds).\n", disturbedShare*100)
}

// WriteMarkdown prints the machine, the method's settings and the tables
// of medians.
func (c *Comparison) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	cfg := c.Config
	m := c.Machine
	fmt.Fprintf(&b, "- machine: %d CPUs, %s, Linux %s\n", m.CPUs, m.CPUModel, m.Kernel)
	fmt.Fprintf(&b, "- versions: %s; %s; %s; tether %s\n", m.Nginx, m.HAProxy, m.Go, m.Tether)
	fmt.Fprintf(&b, "- load average (1 min): %s before the first run, %s after the last\n", m.LoadStart, m.LoadEnd)
	fmt.Fprintf(&b, "- pinning: %s\n", c.Pinning)
	fmt.Fprintf(&b, "- runs: %d rounds, peers in turn (%s), a fresh process per run; medians over the rounds\n",
		cfg.Rounds, strings.Join(c.Peers, " "))
	fmt.Fprintf(&b, "- config: 2 nodes (tether-bench node); routing on the %s cookie by node name; access log off in every peer; "+
		"%d worker(s) (nginx worker_processes, HAProxy nbthread, tether's processors: --procs auto over all the CPUs, GOMAXPROCS when fewer); direct = one node in the proxy's seat\n\n",
		DefaultCookie, c.Workers)

	rows := c.Rows()
	traffic := func(s string) bool { return s == CompareHTTP || s == CompareWS || s == CompareWSS }
	if slices.ContainsFunc(c.Scenarios, traffic) {
		b.WriteString("| scenario | generator | peer | throughput | × best peer | p50 | × best peer | p99 | × best peer | peer CPU | CPU/op | syscalls/op | errors | outside CPU | peer runq wait |\n")
		b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		writeRows(&b, rows, traffic, func(r Row) string {
			unit := "msg/s"
			if r.Scenario == CompareHTTP {
				unit = "req/s"
			}
			return fmt.Sprintf("| %s | %s | %s | %s %s | %s |\n", r.Scenario, r.Generator, r.Peer, fmtThousands(r.PerSecond), unit, r.rateCells())
		})
		fmt.Fprintf(&b, "\nhttp: %d keep-alive connections, GET of %d B with the sticky cookie, %v per run. "+
			"ws-echo: %d WebSockets, %d-byte messages echoed by the node, one in flight each; a message is a round trip, %v per run. "+
			"wss-echo: the same through the peer's TLS listener (ECDSA P-256 certificate); direct has no TLS.\n",
			cfg.Conns, cfg.ResourceBytes, cfg.Duration, cfg.Sessions, cfg.MessageBytes, cfg.Duration)
		b.WriteString("× best peer: the figure ÷ the best of nginx and HAProxy in this run with the same generator (highest throughput, lowest latency); " +
			"direct is shown for reference. peer CPU: cores the peer's processes used (nginx: its workers).\n")
		b.WriteString(c.generatorNote())
	}
	handshakes := func(s string) bool { return s == CompareTLSRSA || s == CompareTLSECDSA }
	if slices.ContainsFunc(c.Scenarios, handshakes) {
		b.WriteString("\n| tls-handshake | peer | handshakes/s | × best peer | p50 | × best peer | p99 | × best peer | peer CPU | CPU/op | syscalls/op | errors | outside CPU | peer runq wait | negotiated |\n")
		b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		writeRows(&b, rows, handshakes, func(r Row) string {
			return fmt.Sprintf("| %s | %s | %s | %s | %s |\n", r.Scenario, r.Peer, fmtThousands(r.PerSecond), r.rateCells(), r.TLS)
		})
		fmt.Fprintf(&b, "\ntls-rsa, tls-ecdsa: %d clients in a closed loop, each connecting, doing a full TLS handshake "+
			"(no resumption; the client offers X25519 only) and one GET / on Connection: close, %v per run; "+
			"every peer serves the same self-signed RSA-2048 or ECDSA P-256 certificate. "+
			"negotiated: certificate key, TLS version, cipher suite, key exchange, as the client saw them. "+
			"Generator go; CPU/op and syscalls/op are per handshake.\n",
			cfg.TLSConns, cfg.Duration)
	}
	if slices.ContainsFunc(c.Scenarios, isIdle) {
		b.WriteString("\n| idle | peer | RSS per session | × best peer | Go heap per session | fds per session | errors |\n")
		b.WriteString("|---|---|---:|---:|---:|---:|---:|\n")
		writeRows(&b, rows, isIdle, func(r Row) string {
			heap := "n/a"
			if r.HeapKiB != 0 {
				heap = fmt.Sprintf("%.2f KiB", r.HeapKiB)
			}
			return fmt.Sprintf("| %s | %s | %.2f KiB | %s | %s | %.2f | %d |\n",
				r.Scenario, r.Peer, r.KiBPerSession, fmtRatio(r.XKiBPerSession), heap, r.FDsPerSession, r.Errors)
		})
		fmt.Fprintf(&b, "\nidle: %d echo WebSockets held %v, each peer with 1 worker; growth of RSS and descriptors "+
			"from before the first session to %v after the last, ÷ sessions. nginx: its one worker process (the master holds no session). "+
			"idle-wss: the same through the peer's TLS listener (ECDSA P-256 certificate); direct has no TLS. "+
			"idle-http: %d plain keep-alive connections, each after one GET of %d B, held the same way (a session is a connection), "+
			"after 64 connections with one GET each warmed the peer up. "+
			"Go heap: tether's live heap after two collections (from its profiler) grown per session; n/a for the others.\n",
			cfg.IdleSessions, cfg.IdleHold, min(compareIdleSettle, cfg.IdleHold), cfg.IdleConns, idleHTTPBytes)
	}
	if slices.ContainsFunc(c.Scenarios, func(s string) bool { return !isIdle(s) }) {
		b.WriteString(contentionNote())
		if runs := c.disturbedRuns(); len(runs) > 0 {
			fmt.Fprintf(&b, "\nnote: ! disturbed runs (outside CPU above %.0f%% of the machine; their latency tells of other work more than of the peer): %s\n",
				disturbedShare*100, strings.Join(runs, ", "))
		}
	}
	for _, n := range c.Notes {
		fmt.Fprintf(&b, "\nnote: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
