// Command tether-bench is tether's harness: a fake co-browse node and a load
// generator. It only wires flags to package bench.
//
//	tether-bench node --name CB_Server_1 --listen 127.0.0.1:8700
//	tether-bench load --target http://127.0.0.1:8080 --scenario mixed --duration 5s
//	tether-bench load --target http://127.0.0.1:8080 --scenario cobrowse --rate 50 --plot cobrowse.png
//	tether-bench load --target https://127.0.0.1:8443 --insecure --scenario tls-handshake --conns 8
//	tether-bench load --target http://127.0.0.1:8080 --scenario idle --sessions 5000 --pid PID
//	tether-bench load --target http://127.0.0.1:8080 --scenario failover --sessions 2000 \
//	    --admin http://127.0.0.1:9090 --kill-node CB_Server_1 --node-url http://127.0.0.1:8700
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/tether-lb/tether/bench"
)

const usage = `tether-bench is the harness of tether. Everything it does stays on loopback.

Usage:
  tether-bench node [flags]   run a fake co-browse node until SIGINT or SIGTERM
  tether-bench load [flags]   drive traffic at a target and print a report
  tether-bench compare [flags]  run the same load against tether, nginx, HAProxy and a node; print a Markdown table
  tether-bench handover [flags] hold WebSocket sessions through tether, hand them to a new process (SIGUSR2); print the time and the pause

Run "tether-bench <command> --help" for the flags of a command.
Exit status: 0 ok, 1 failure (load: errors or sticky violations), 2 bad flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "tether-bench: missing command: want node, load, compare or handover (see tether-bench --help)")
		return 2
	}
	switch args[0] {
	case "node":
		return runNode(ctx, args[1:], stdout, stderr)
	case "load":
		return runLoad(ctx, args[1:], stdout, stderr)
	case "compare":
		return runCompare(ctx, args[1:], stdout, stderr)
	case "handover":
		return runHandover(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "tether-bench: unknown command %q: want node, load, compare or handover (see tether-bench --help)\n", args[0])
	return 2
}

// command is one subcommand's flag set.
type command struct {
	name, summary string
	fs            *flag.FlagSet
	logLevel      *string
	logFormat     *string
}

func newCommand(name, summary string) *command {
	c := &command{name: name, summary: summary, fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.logLevel = c.fs.String("log-level", "info", "log level: debug, info, warn or error")
	c.logFormat = c.fs.String("log-format", "console", "log format on stderr: console or json")
	return c
}

// parse reads args. It returns -1 to go on, or the exit status: 0 after
// --help (the usage goes to stdout), 2 after one line about a bad flag.
func (c *command) parse(args []string, stdout, stderr io.Writer) int {
	c.fs.SetOutput(io.Discard)
	err := c.fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		c.fs.SetOutput(stdout)
		fmt.Fprintf(stdout, "Usage: tether-bench %s [flags]\n\n%s\n\nFlags:\n", c.name, c.summary)
		c.fs.PrintDefaults()
		return 0
	case err != nil:
		return c.bad(stderr, err.Error())
	case c.fs.NArg() > 0:
		return c.bad(stderr, fmt.Sprintf("unexpected argument %q", c.fs.Arg(0)))
	}
	return -1
}

// bad prints one line about a bad flag and returns 2.
func (c *command) bad(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "tether-bench %s: %s (see tether-bench %s --help)\n", c.name, msg, c.name)
	return 2
}

// logger builds the logger of --log-level and --log-format on stderr.
func (c *command) logger(stderr io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(strings.ToLower(*c.logLevel))
	if err != nil || *c.logLevel == "" {
		return zerolog.Logger{}, fmt.Errorf("--log-level %q: want debug, info, warn or error", *c.logLevel)
	}
	var out io.Writer
	switch *c.logFormat {
	case "console":
		out = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.RFC3339, NoColor: !isTerminal(stderr)}
	case "json":
		out = stderr
	default:
		return zerolog.Logger{}, fmt.Errorf("--log-format %q: want console or json", *c.logFormat)
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger(), nil
}

// isTerminal reports whether w is a terminal, which gets colours.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func runNode(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("node", "Runs a fake co-browse node (see docs/ARCHITECTURE.md) until SIGINT or SIGTERM.")
	name := c.fs.String("name", "CB_Server_1", "node name: the X-Node header and the value of the cookie it sets")
	listen := c.fs.String("listen", "127.0.0.1:8700", "loopback address to listen on (port 0 picks a free one)")
	pollWait := c.fs.Duration("poll-wait", bench.DefaultPollWait, "how long a long poll waits for a message before 204")
	cookie := c.fs.String("cookie", bench.DefaultCookie, "stickiness cookie name")
	if code := c.parse(args, stdout, stderr); code >= 0 {
		return code
	}
	log, err := c.logger(stderr)
	switch {
	case err != nil:
		return c.bad(stderr, err.Error())
	case *name == "":
		return c.bad(stderr, "--name is empty")
	case *pollWait <= 0:
		return c.bad(stderr, fmt.Sprintf("--poll-wait %v: want > 0", *pollWait))
	case *cookie == "":
		return c.bad(stderr, "--cookie is empty")
	}
	if err := bench.CheckLoopback(*listen); err != nil {
		return c.bad(stderr, fmt.Sprintf("--listen %s", err))
	}
	ln, err := bench.ListenLoopback(*listen)
	if err != nil {
		log.Error().Err(err).Msg("listen")
		return 1
	}

	node := bench.NewNode(bench.NodeConfig{Name: *name, Cookie: *cookie, PollWait: *pollWait}, log)
	served := make(chan error, 1)
	go serve(node, ln, served)
	log.Info().Str("node", *name).Str("addr", ln.Addr().String()).Msg("node listening")

	code := 0
	select {
	case <-ctx.Done():
	case err := <-served:
		log.Error().Err(err).Msg("serve")
		code = 1
	}
	_ = node.Close()
	log.Info().Str("node", *name).Msg("node stopped")
	return code
}

// serve runs node on ln and reports how it ended.
func serve(node *bench.Node, ln net.Listener, served chan<- error) {
	served <- node.Serve(ln)
}

func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("load", "Drives co-browse traffic at a target (tether or a node) for a while, then prints\n"+
		"latency percentiles, throughput, errors, sticky violations and a per-node summary,\n"+
		"with a progress line a second on stderr. An https:// target is spoken to over TLS\n"+
		"(WebSockets over wss); --insecure accepts a self-signed certificate.\n"+
		"Without --rate each connection or session runs a closed loop (one operation in flight,\n"+
		"the next when it ends); --rate R runs an open loop of R operations a second per\n"+
		"connection or session, latency from each one's scheduled start (as wrk2).\n"+
		"The idle scenario instead holds --sessions echo WebSockets idle and reports the RSS\n"+
		"and descriptors per session of the target process --pid; idle-http holds --sessions plain\n"+
		"keep-alive connections idle, each after one GET, and reports the same per connection.\n"+
		"With --pprof (tether's admin listener, run with --pprof) both also report the growth of\n"+
		"its live Go heap.\n"+
		"The failover scenario opens --sessions echo WebSockets on --kill-node through tether,\n"+
		"switches that node's health off and reports how soon tether tells each client (1012);\n"+
		"it exits 1 unless all were told within 1s (plus --expect-spread) of detection.\n"+
		"Exits 1 if there were errors or sticky violations.")
	var cfg bench.LoadConfig
	c.fs.StringVar(&cfg.Target, "target", "http://127.0.0.1:8080", "base URL of tether or of a node (loopback only)")
	c.fs.StringVar(&cfg.Scenario, "scenario", bench.ScenarioMixed,
		"http (keep-alive GETs), cobrowse or ws (customer → agent WebSocket sessions), ws-echo (echo WebSockets, round trips), "+
			"longpoll (cobrowse over POST /cobrowse/send and GET /cobrowse/poll), mixed (http and cobrowse), "+
			"big (--big-mb uploads and downloads), tls-handshake (new TLS connections, https target), "+
			"idle (idle WebSockets; see --pid), idle-http (idle keep-alive connections; see --pid) or failover (see --kill-node)")
	c.fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "how long to start new requests and messages")
	c.fs.IntVar(&cfg.Conns, "conns", 8, "keep-alive HTTP connections (http, mixed, big); clients handshaking at once (tls-handshake)")
	c.fs.IntVar(&cfg.Sessions, "sessions", 20, fmt.Sprintf("co-browse sessions (cobrowse, longpoll, mixed); echo WebSockets (ws-echo); "+
		"echo WebSockets or keep-alive connections held idle (idle, idle-http; at most %d)", bench.MaxIdleSessions))
	c.fs.Float64Var(&cfg.Rate, "rate", 0, "open loop: operations a second per connection or session (total = rate × conns or sessions); 0: closed loop")
	c.fs.IntVar(&cfg.ResourceBytes, "bytes", 1024, "body size of each GET /cobrowse/resource")
	c.fs.IntVar(&cfg.MessageBytes, "msg-bytes", 2048, "size of each message, a DOM update (at least 16)")
	c.fs.IntVar(&cfg.SnapshotBytes, "snapshot-bytes", 256<<10, "size of a DOM snapshot message")
	c.fs.IntVar(&cfg.SnapshotEvery, "snapshot-every", 100, "every K-th message of a session is a snapshot (cobrowse, longpoll, mixed, ws-echo); 0: none")
	c.fs.IntVar(&cfg.BigMB, "big-mb", 10, "big: size of each upload and download, in MB (1,000,000 bytes)")
	c.fs.BoolVar(&cfg.Insecure, "insecure", false, "https target: skip the verification of its certificate (self-signed test certificates)")
	c.fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "limit of each request, handshake and message")
	c.fs.StringVar(&cfg.Cookie, "cookie", bench.DefaultCookie, "stickiness cookie name")
	c.fs.IntVar(&cfg.PID, "pid", 0, "idle, idle-http: process whose RSS, descriptors and threads are read (tether's)")
	c.fs.StringVar(&cfg.Pprof, "pprof", "", "idle, idle-http: base URL of tether's admin listener with --pprof on, e.g. http://127.0.0.1:9090: "+
		"its live Go heap is read too (after a collection)")
	c.fs.DurationVar(&cfg.Hold, "hold", 10*time.Second, "idle: how long the sessions stay idle once open")
	c.fs.DurationVar(&cfg.Settle, "settle", 2*time.Second, "idle: wait after the last session opened before reading --pid (at most --hold)")
	c.fs.IntVar(&cfg.SourceIPs, "source-ips", 1, fmt.Sprintf("idle, failover: spread client sockets over source addresses 127.0.0.1..127.0.0.K (at most %d)", bench.MaxSourceIPs))
	c.fs.IntVar(&cfg.Concurrency, "concurrency", 64, "idle, failover: sessions opened at once")
	var fcfg bench.FailoverConfig
	c.fs.StringVar(&fcfg.Admin, "admin", "", "failover: base URL of tether's admin listener (GET /status), e.g. http://127.0.0.1:9090")
	c.fs.StringVar(&fcfg.Node, "kill-node", "", "failover: the node whose sessions are opened and whose health is switched off")
	c.fs.StringVar(&fcfg.NodeURL, "node-url", "", "failover: base URL of that node itself, for POST /cobrowse/_ctl/health")
	c.fs.DurationVar(&fcfg.ExpectSpread, "expect-spread", 0, "failover: tether's --evict-spread; clients may be told up to this + 1s after detection")
	asJSON := c.fs.Bool("json", false, "print one JSON object instead of tables")
	plotFile := c.fs.String("plot", "", "write latency over time and by percentile to this PNG file (not idle, failover)")
	if code := c.parse(args, stdout, stderr); code >= 0 {
		return code
	}
	log, err := c.logger(stderr)
	if err != nil {
		return c.bad(stderr, err.Error())
	}
	// Each idle session holds a socket of this process.
	if limit, err := bench.RaiseFileLimit(); err != nil {
		log.Warn().Err(err).Uint64("limit", limit).Msg("raise open-files limit")
	} else {
		log.Debug().Uint64("limit", limit).Msg("open-files limit")
	}
	cfg.Progress = stderr
	for _, f := range []struct {
		flag string
		v    int
	}{
		{"--conns", cfg.Conns}, {"--sessions", cfg.Sessions}, {"--bytes", cfg.ResourceBytes + 1}, {"--msg-bytes", cfg.MessageBytes},
		{"--snapshot-bytes", cfg.SnapshotBytes}, {"--snapshot-every", cfg.SnapshotEvery + 1}, {"--big-mb", cfg.BigMB},
		{"--source-ips", cfg.SourceIPs}, {"--concurrency", cfg.Concurrency},
	} {
		if f.v <= 0 {
			return c.bad(stderr, f.flag+" must be positive")
		}
	}
	if cfg.Duration <= 0 || cfg.Timeout <= 0 || cfg.Hold <= 0 || cfg.Settle <= 0 {
		return c.bad(stderr, "--duration, --timeout, --hold and --settle must be positive")
	}
	if err := cfg.Validate(); err != nil {
		return c.bad(stderr, err.Error())
	}
	if *plotFile != "" && (cfg.Scenario == bench.ScenarioIdle || cfg.Scenario == bench.ScenarioIdleHTTP || cfg.Scenario == bench.ScenarioFailover) {
		return c.bad(stderr, fmt.Sprintf("--plot: the %s scenario measures no latencies to plot", cfg.Scenario))
	}

	var rep interface {
		WriteText(io.Writer) error
		WriteJSON(io.Writer) error
		Failed() bool
	}
	if cfg.Scenario == bench.ScenarioFailover {
		fcfg.Load = cfg
		if err := fcfg.Validate(); err != nil {
			return c.bad(stderr, err.Error())
		}
		rep, err = bench.RunFailover(ctx, fcfg, log)
	} else {
		var lr *bench.Report
		lr, err = bench.RunLoad(ctx, cfg, log)
		if err == nil && *plotFile != "" {
			if perr := lr.WritePlot(*plotFile); perr != nil {
				log.Error().Err(perr).Msg("plot")
				return 1
			}
			log.Info().Str("file", *plotFile).Msg("plot written")
		}
		rep = lr
	}
	if err != nil {
		return c.bad(stderr, err.Error())
	}
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		log.Error().Err(err).Msg("write report")
		return 1
	}
	if rep.Failed() {
		return 1
	}
	return 0
}

func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("compare", "Starts two fake nodes, then tether, nginx, HAProxy and a node alone (direct) in turn\n"+
		"in front of them on loopback, runs each scenario against each, round after round, and\n"+
		"prints the machine, the versions, the pinning and Markdown tables of medians with\n"+
		"each figure's ratio to the best of nginx and HAProxy. The TLS scenarios use an RSA-2048\n"+
		"and an ECDSA P-256 certificate generated for the run, the same files for every peer.\n"+
		"Progress (and first an estimate of the time it takes) goes to stderr.")
	var cfg bench.CompareConfig
	c.fs.StringVar(&cfg.TetherBin, "tether-bin", "bin/tether", "tether's binary")
	c.fs.StringVar(&cfg.NginxBin, "nginx-bin", "nginx", "nginx's binary")
	c.fs.StringVar(&cfg.HAProxyBin, "haproxy-bin", "haproxy", "HAProxy's binary")
	c.fs.StringVar(&cfg.Templates, "templates", "scripts/compare", "directory of nginx.conf.tmpl and haproxy.cfg.tmpl")
	tetherFlags := c.fs.String("tether-flags", "", "more flags for tether, space-separated (e.g. \"--admin 127.0.0.1:9191 --pprof\")")
	peers := c.fs.String("peers", strings.Join(bench.DefaultComparePeers, ","), "peers, in the order of each round: "+strings.Join(bench.KnownPeers, ", ")+" (tether-goroutines: tether with --splice-loops -1; tether-conn-goroutines: tether with --http-loops -1)")
	scenarios := c.fs.String("scenarios", strings.Join(bench.DefaultCompareScenarios, ","),
		"scenarios run against each peer (wss-echo, tls-rsa, tls-ecdsa and idle-wss go through the peers' TLS listeners; direct skips them; "+
			"idle-http: plain keep-alive connections held idle, each after one GET: RSS, descriptors and, for tether, Go heap per connection)")
	c.fs.IntVar(&cfg.Rounds, "rounds", 3, "rounds: every peer runs every scenario once per round")
	c.fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length of each http, ws-echo, wss-echo and tls-* run")
	c.fs.IntVar(&cfg.Conns, "conns", 32, "http: keep-alive connections")
	c.fs.IntVar(&cfg.TLSConns, "tls-conns", 8, "tls-rsa, tls-ecdsa: clients handshaking at once")
	c.fs.IntVar(&cfg.Sessions, "sessions", 32, "ws-echo, wss-echo: WebSockets, one message in flight each")
	c.fs.IntVar(&cfg.ResourceBytes, "bytes", 1024, "http: body size of each GET")
	c.fs.IntVar(&cfg.MessageBytes, "msg-bytes", 256, "ws-echo: message size (at least 16)")
	c.fs.IntVar(&cfg.IdleSessions, "idle-sessions", 2000, "idle: WebSockets held idle")
	c.fs.IntVar(&cfg.IdleConns, "idle-conns", 4000, "idle-http: keep-alive connections held idle")
	c.fs.DurationVar(&cfg.IdleHold, "idle-hold", 5*time.Second, "idle, idle-wss, idle-http: how long they are held")
	c.fs.StringVar(&cfg.Pin, "pin", bench.PinNone, "none, or split: the peer under test on the 2nd CPU, load and nodes on the 1st (taskset)")
	c.fs.StringVar(&cfg.Dir, "dir", "", "directory for the processes' configurations and logs (default: a temporary one, removed)")
	c.fs.StringVar(&cfg.Generator, "generator", bench.GeneratorGo, "who drives http and ws-echo: go (tether-bench's own generator, in this process), "+
		"wrk (http by wrk, ws-echo by wsgen, a C program compiled with cc -O2 at run time), or both (each run once with each); other scenarios use go")
	syscalls := c.fs.Bool("syscalls", true, "count the system calls of the peer's processes per request or message (Linux perf events on the raw_syscalls:sys_enter tracepoint; n/a where they are not allowed)")
	if code := c.parse(args, stdout, stderr); code >= 0 {
		return code
	}
	log, err := c.logger(stderr)
	if err != nil {
		return c.bad(stderr, err.Error())
	}
	cfg.Peers, cfg.Scenarios = strings.Split(*peers, ","), strings.Split(*scenarios, ",")
	cfg.TetherArgs = strings.Fields(*tetherFlags)
	cfg.NoSyscalls = !*syscalls
	cfg.Progress = stderr
	if err := cfg.Validate(); err != nil {
		return c.bad(stderr, err.Error())
	}
	if _, err := bench.RaiseFileLimit(); err != nil {
		log.Warn().Err(err).Msg("raise open-files limit")
	}
	cmp, err := bench.RunCompare(ctx, cfg, log)
	if err != nil {
		log.Error().Err(err).Msg("compare")
		return 1
	}
	if err := cmp.WriteMarkdown(stdout); err != nil {
		log.Error().Err(err).Msg("write table")
		return 1
	}
	return 0
}

func runHandover(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("handover", "Starts two fake nodes and a tether in front of them on loopback, holds plain WebSockets\n"+
		"through it (co-browse sessions: customer and agent, each sending a numbered message every\n"+
		"--interval that the other checks), sends tether SIGUSR2 so that it hands them to a new\n"+
		"process, and prints how long the hand-over took and the pause each WebSocket saw.\n"+
		"Exits 1 if a session was closed or a stream lost, doubled or reordered a message.")
	var cfg bench.HandoverConfig
	c.fs.StringVar(&cfg.TetherBin, "tether-bin", "bin/tether", "tether's binary (it hands over to itself)")
	counts := c.fs.String("sessions", "1000,4000,9000", fmt.Sprintf("plain WebSocket counts, comma-separated, each with a fresh tether (even, at most %d)", bench.MaxHandoverSessions))
	c.fs.DurationVar(&cfg.Interval, "interval", time.Second, "time between two messages of one WebSocket")
	c.fs.IntVar(&cfg.Swaps, "swaps", 2, "hand-overs per count, one after another")
	if code := c.parse(args, stdout, stderr); code >= 0 {
		return code
	}
	for _, f := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return c.bad(stderr, fmt.Sprintf("--sessions %q: %v", *counts, err))
		}
		cfg.Sessions = append(cfg.Sessions, n)
	}
	if cfg.Interval <= 0 || cfg.Swaps <= 0 {
		return c.bad(stderr, "--interval and --swaps must be positive")
	}
	cfg.Out = stdout
	if _, err := bench.RunHandover(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "tether-bench handover: %v\n", err)
		return 1
	}
	return 0
}
