// Flags: the custom flag types, parseFlags (flags and a YAML file into
// one proxy.Config) and the --help text.

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/internal/procs"
	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy"
	"github.com/tether-lb/tether/tlsterm"
)

// nodeFlags collects repeated --node NAME=URL values.
type nodeFlags []pool.NodeConfig

func (n *nodeFlags) String() string { return "" }

func (n *nodeFlags) Set(v string) error {
	name, u, ok := strings.Cut(v, "=")
	if !ok || name == "" || u == "" {
		return fmt.Errorf("want NAME=URL, e.g. CB_Server_1=http://127.0.0.1:8700")
	}
	*n = append(*n, pool.NodeConfig{Name: name, URL: u})
	return nil
}

// onOff is a switch flag that also reads on/off: --access-log,
// --access-log=off, --access-log off (see joinOnOff).
// procsFlag is --procs: auto (0) or a count of processors.
type procsFlag int

func (p *procsFlag) String() string {
	if p == nil || *p == 0 {
		return "auto"
	}
	return strconv.Itoa(int(*p))
}

// Get makes procsFlag a flag.Getter: a --config key takes one value.
func (p *procsFlag) Get() any { return p.String() }

func (p *procsFlag) Set(v string) error {
	n, err := procs.Parse(v)
	*p = procsFlag(n)
	return err
}

type onOff bool

func (o *onOff) String() string {
	if o != nil && bool(*o) {
		return "on"
	}
	return "off"
}

func (o *onOff) Set(v string) error {
	switch strings.ToLower(v) {
	case "on", "true", "1", "yes":
		*o = true
	case "off", "false", "0", "no":
		*o = false
	default:
		return fmt.Errorf("%q: use on or off", v)
	}
	return nil
}

func (o *onOff) IsBoolFlag() bool { return true }

// Get makes onOff a flag.Getter: a flag of one value (see isRepeated).
func (o *onOff) Get() any { return bool(*o) }

// joinOnOff turns "--access-log off" into "--access-log=off": a switch flag
// alone means on, so its value must otherwise be joined with "=".
func joinOnOff(args []string, names ...string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := strings.TrimLeft(a, "-")
		if i+1 < len(args) && a != name && slices.Contains(names, name) {
			switch strings.ToLower(args[i+1]) {
			case "on", "off", "true", "false":
				out = append(out, a+"="+args[i+1])
				i++
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// fileList collects a repeated file flag (--cert, --key).
type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

// hostList collects comma-separated host names (--admin-hosts); the flag
// may repeat.
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }

func (h *hostList) Set(v string) error {
	for name := range strings.SplitSeq(v, ",") {
		if name = strings.TrimSpace(name); name != "" {
			*h = append(*h, name)
		}
	}
	return nil
}

// prefixList collects comma-separated networks (--proxy-protocol-from): a
// CIDR, or an address alone for itself; the flag may repeat, and a config
// file may give a list.
type prefixList []netip.Prefix

func (p *prefixList) String() string {
	s := make([]string, len(*p))
	for i, v := range *p {
		s[i] = v.String()
	}
	return strings.Join(s, ",")
}

func (p *prefixList) Set(v string) error {
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		pf, err := netip.ParsePrefix(item)
		if err != nil {
			a, aerr := netip.ParseAddr(item)
			if aerr != nil {
				return fmt.Errorf("%q is not a network (CIDR such as 10.0.0.0/8) or an address", item)
			}
			pf = netip.PrefixFrom(a, a.BitLen())
		}
		*p = append(*p, pf.Masked())
	}
	return nil
}

// options is everything the command line sets beyond proxy.Config.
type options struct {
	configFile    string
	logLevel      string
	logFormat     string
	releaseMemory bool
	procs         int // --procs: 0 auto, else fixed
	upgrade       upgradeOpts
}

// parseFlags binds every flag into cfg and opts. It returns flag.ErrHelp
// after printing help. Its errors name the flag and the bad value, with the
// password of any URL in them redacted.
func parseFlags(args []string, stderr io.Writer) (cfg proxy.Config, opts options, err error) {
	defer func() { err = redacted(err) }()
	var nodes nodeFlags
	var certs, keys fileList
	fs := flag.NewFlagSet("tether", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// The defaults are SetDefaults' (proxy, pool, tlsterm): each flag starts
	// at its field's default, which --help shows. A flag whose zero means
	// something (0: automatic, off or none) starts at zero, and the few that
	// are the command's own (listen addresses, --health-interval) are set
	// here only.
	var def proxy.Config
	def.SetDefaults()

	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "plain-HTTP listen `address`")
	fs.StringVar(&cfg.Admin, "admin", "127.0.0.1:9090", "admin `address` for /metrics, /status, /healthz and node drain/enable (empty: none); an address that is not loopback needs --admin-token-file")
	fs.StringVar(&cfg.AdminTokenFile, "admin-token-file", "", "`file` holding a bearer token every admin request must carry (Authorization: Bearer TOKEN), except GET /healthz and /livez so health checkers need none; SIGHUP re-reads it (empty: no token, loopback --admin only)")
	fs.Var((*hostList)(&cfg.AdminHosts), "admin-hosts", "host `names` (comma-separated) the admin listener answers to, beside IP addresses and localhost; any other Host header gets 421 (DNS rebinding)")
	fs.BoolVar(&cfg.ReusePort, "reuseport", true, "listen with SO_REUSEPORT: a new tether can start on the same ports before the old one gets SIGTERM")
	fs.IntVar(&cfg.HTTPLoops, "http-loops", 0, "epoll loops that hold idle plain keep-alive client connections and read their requests when readable (0: one per CPU; -1: none, a goroutine per connection; TLS connections always keep their goroutine)")
	fs.IntVar(&cfg.SpliceLoops, "splice-loops", 0, "epoll loops that splice plain WebSocket sessions (0: one per CPU; -1: goroutines only; TLS sessions always use goroutines)")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve Go's profiler under /debug/pprof/ on the admin listener")
	fs.StringVar(&cfg.TLS.Listen, "tls-listen", "", "HTTPS listen `address` (empty: none); TLS is terminated here")
	fs.Var(&certs, "cert", "PEM certificate `file` (chain after the leaf); repeat, paired in order with --key; SNI picks by name, the first is the default")
	fs.Var(&keys, "key", "PEM private key `file` of the --cert at the same position")
	fs.BoolVar(&cfg.TLS.SelfSigned, "tls-self-signed", false, "generate a certificate for localhost and 127.0.0.1 at start and log its fingerprint (demos, tests)")
	fs.StringVar(&cfg.TLS.MinVersion, "tls-min", def.TLS.MinVersion, "lowest TLS `version`: 1.2 or 1.3")
	fs.DurationVar(&cfg.TLS.HandshakeTimeout, "tls-handshake-timeout", def.TLS.HandshakeTimeout, "bound on one TLS handshake")
	fs.IntVar(&cfg.TLS.MaxHandshakes, "tls-max-handshakes", 0, "TLS handshakes doing crypto at once (0: 2 × cores; -1: no cap), so a handshake flood cannot starve established sessions")
	fs.StringVar(&cfg.TLS.BackendCA, "backend-ca", "", "PEM `file` of CAs that https nodes are verified against (empty: system roots)")
	fs.BoolVar(&cfg.TLS.BackendInsecure, "backend-insecure", false, "do not verify https nodes' certificates (labs only; logged at start)")
	fs.Var(&nodes, "node", "a backend as `NAME=URL` (http://host:port); repeat for each node")
	fs.Var((*fileList)(&cfg.Pool.NodeSRV), "node-srv", "DNS `name` whose SRV records list nodes (_http._tcp.cobrowse.ns.svc.cluster.local): each target is a node named by its first label, at http://TARGET:PORT; a https+ prefix makes https nodes; repeat for more names")
	fs.Var((*fileList)(&cfg.Pool.NodeDNS), "node-dns", "`HOST:PORT` whose A and AAAA records list nodes: each address is a node named by the address (':' written '-'); a https+ prefix makes https nodes; repeat for more names")
	fs.DurationVar(&cfg.Pool.DNSInterval, "node-dns-interval", def.Pool.DNSInterval, "time between lookups of each --node-srv and --node-dns name, and not before the answer's TTL ends (a failed or empty lookup keeps the last nodes)")
	fs.StringVar(&cfg.Pool.DNSServer, "dns-server", "", "DNS server `IP:PORT` for --node-srv and --node-dns (empty: the servers of /etc/resolv.conf)")
	fs.DurationVar(&cfg.Pool.DNSTimeout, "dns-timeout", def.Pool.DNSTimeout, "bound on one DNS query of --node-srv and --node-dns")
	fs.IntVar(&cfg.Pool.DNSMaxNodes, "node-dns-max-nodes", def.Pool.DNSMaxNodes, "most nodes one --node-srv or --node-dns name may give (records past it are ignored and logged)")
	fs.BoolVar(&cfg.Pool.DNSAllowLoopback, "node-dns-allow-loopback", false, "let --node-srv and --node-dns answers name loopback addresses (127.0.0.0/8, ::1), for labs and tests whose nodes run on this host; off because a forged or compromised DNS answer could otherwise send clients to any service on tether's own host, the admin listener among them (tether's own listen addresses, and unspecified, multicast and link-local addresses, are refused either way)")
	fs.StringVar(&cfg.StickyCookie, "sticky-cookie", def.StickyCookie, "stickiness cookie `name`: its value (NAME or anything.NAME) picks the node")
	fs.StringVar(&cfg.StickyParam, "sticky-param", def.StickyParam, "stickiness query parameter `name`, for clients without cookies")
	fs.DurationVar(&cfg.Pool.ConnectTimeout, "connect-timeout", def.Pool.ConnectTimeout, "bound on one connect to a node; a refused connect fails at once")
	fs.DurationVar(&cfg.UpstreamTimeout, "upstream-timeout", def.UpstreamTimeout, "how long a node may take to start its answer (long polls)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", def.IdleTimeout, "close a keep-alive client connection idle this long")
	fs.DurationVar(&cfg.HeaderTimeout, "header-timeout", def.HeaderTimeout, "bound on reading one request head (408 after)")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", def.WriteTimeout, "bound on one write to a client or node that stops reading")
	fs.DurationVar(&cfg.BodyTimeout, "body-timeout", def.BodyTimeout, "bound on each wait for body bytes in flight; also the grace before --body-min-rate applies")
	fs.Int64Var(&cfg.BodyMinRate, "body-min-rate", def.BodyMinRate, "least a request body must average, in `bytes` a second, after --body-timeout: a body of n bytes may take --body-timeout + n/rate (408 past it; -1: none)")
	fs.DurationVar(&cfg.LingerTimeout, "linger-timeout", def.LingerTimeout, "after an answer that refuses a request still arriving (400, 408, 413, 431), read and drop the client's bytes this long at most (and 256 KiB) before closing, so the answer is not lost to a reset")
	fs.DurationVar(&cfg.WSIdleTimeout, "ws-idle-timeout", 0, "end a WebSocket session idle this long both ways (0: never)")
	fs.IntVar(&cfg.MaxHeaderBytes, "max-header-bytes", def.MaxHeaderBytes, "largest request or answer head in `bytes` (431 past it)")
	fs.IntVar(&cfg.MaxHeaderFields, "max-header-fields", def.MaxHeaderFields, "most header fields in a request head, Host included (431 past it)")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 0, "largest request body in `bytes` (413 past it; 0: no limit)")
	fs.BoolVar(&cfg.ProxyProtocol, "proxy-protocol", false, "require a PROXY protocol header (v1 or v2) before every connection's first byte on both listeners, from --proxy-protocol-from; its client address is the one forwarded (X-Forwarded-For, X-Real-IP) and logged; a missing, bad or untrusted one closes the connection (needs --proxy-protocol-from)")
	fs.Var((*prefixList)(&cfg.ProxyProtocolFrom), "proxy-protocol-from", "`networks` (CIDR, comma-separated) of the L4 tier, the only sources trusted to send the PROXY protocol header; required with --proxy-protocol")
	fs.IntVar(&cfg.MaxConns, "max-conns", 0, "most concurrent client connections (0: half the descriptor limit less a reserve; -1: no limit)")
	fs.IntVar(&cfg.Pool.MaxIdle, "pool-max-idle", def.Pool.MaxIdle, "idle keep-alive connections kept per node (-1: none)")
	fs.DurationVar(&cfg.Pool.IdleTimeout, "pool-idle-timeout", def.Pool.IdleTimeout, "close a pooled node connection idle this long")
	fs.StringVar(&cfg.Pool.HealthPath, "health-path", def.Pool.HealthPath, "`path` each node's health loop requests with GET")
	fs.DurationVar(&cfg.Pool.HealthInterval, "health-interval", 2*time.Second, "time between probes of a node, ±10% (0: active checks off)")
	fs.DurationVar(&cfg.Pool.HealthTimeout, "health-timeout", def.Pool.HealthTimeout, "bound on one probe")
	fs.IntVar(&cfg.Pool.Rise, "rise", def.Pool.Rise, "good probes in a row that bring a node back")
	fs.IntVar(&cfg.Pool.Fall, "fall", def.Pool.Fall, "failed probes in a row that take a node out")
	fs.DurationVar(&cfg.Pool.EvictSpread, "evict-spread", 0, "spread the closing of a dead node's WebSocket sessions over this long (0: all at once)")
	cfg.AccessLog = true
	fs.Var((*onOff)(&cfg.AccessLog), "access-log", "`on` or off: one JSON line per request and WebSocket session on stdout")
	opts.releaseMemory = true
	fs.Var((*onOff)(&opts.releaseMemory), "release-memory", "`on` or off: after a burst of new connections, once traffic is quiet, collect garbage and return free memory to the OS at once (one collection per burst; read at start)")
	fs.Var((*procsFlag)(&opts.procs), "procs", "`auto` or a count: processors Go runs tether's code on (GOMAXPROCS). auto: one while tether uses under a quarter of a CPU for 5s (each wake-up then stays on its thread instead of waking another), all the runtime's (the CPUs, or the container's limit) from half a CPU or when goroutines wait to run; a GOMAXPROCS environment variable fixes the count instead (read at start)")
	fs.StringVar(&opts.configFile, "config", "", "YAML `file` whose keys are these flags' long names (a list for node, cert, key); flags given here win; SIGHUP re-reads it")
	fs.StringVar(&opts.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&opts.logFormat, "log-format", "json", "json, or console for people")
	fs.DurationVar(&cfg.DrainDelay, "drain-delay", 0, "on SIGTERM, keep accepting and serving this long with /healthz answering 503 (/livez stays 200), so an L4 tier or a Kubernetes Service takes tether out first; then drain (a second SIGTERM cuts it short)")
	fs.StringVar(&opts.upgrade.binary, "upgrade-binary", "", "`path` of the binary SIGUSR2 starts and hands the listeners and node states to (empty: the path of the running binary, looked up again at each SIGUSR2, so a binary replaced in place is the one started)")
	fs.DurationVar(&opts.upgrade.timeout, "handover-timeout", 30*time.Second, "bound on a hand-over to a new binary (SIGUSR2), from its start until it says it serves; past it, or if it fails or exits, the new process is killed and this one goes on serving; it bounds the move of the sessions after it again (past it they stay here)")
	fs.DurationVar(&opts.upgrade.hardStop, "handover-hard-stop", time.Hour, "after a hand-over (SIGUSR2), how long the old process keeps what could not move to the new one (TLS sessions, requests in flight) before it drains as on SIGTERM, telling WebSocket clients 1001 over half of --drain-timeout")
	fs.DurationVar(&cfg.Pool.DrainTimeout, "drain-timeout", def.Pool.DrainTimeout, "on SIGTERM, how long requests in flight may take before connections are closed (WebSockets are told 1001 over its first half); after a reload, how long a removed node keeps its sticky traffic")

	// fs.Usage does nothing: the flag package calls it on every parse error,
	// and a bad flag gets one line; --help prints usage below instead.
	fs.Usage = func() {}
	var switches []string // the on/off flags
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := f.Value.(*onOff); ok {
			switches = append(switches, f.Name)
		}
	})
	if err := fs.Parse(joinOnOff(args, switches...)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stderr, fs)
			return cfg, opts, err
		}
		return cfg, opts, flagError(fs, err)
	}
	if fs.NArg() > 0 {
		return cfg, opts, fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	if opts.configFile != "" {
		if err := applyConfigFile(fs, opts.configFile); err != nil {
			return cfg, opts, err
		}
	}
	cfg.Pool.Nodes = nodes
	cfg.Pool.SelfAddrs = selfAddrs(&cfg)
	if len(certs) != len(keys) {
		return cfg, opts, fmt.Errorf("--cert/--key: %d certificates and %d keys; give them in pairs", len(certs), len(keys))
	}
	for i := range certs {
		cfg.TLS.Certs = append(cfg.TLS.Certs, tlsterm.CertFile{Cert: certs[i], Key: keys[i]})
	}
	if err := pool.CheckRiseFall(cfg.Pool.Rise, cfg.Pool.Fall); err != nil { // before SetDefaults: 0 here was given
		return cfg, opts, err
	}
	if _, err := zerolog.ParseLevel(opts.logLevel); err != nil || opts.logLevel == "" {
		return cfg, opts, fmt.Errorf("--log-level %q: use debug, info, warn or error", opts.logLevel)
	}
	if opts.logFormat != "json" && opts.logFormat != "console" {
		return cfg, opts, fmt.Errorf("--log-format %q: use json or console", opts.logFormat)
	}
	if opts.upgrade.timeout <= 0 {
		return cfg, opts, fmt.Errorf("--handover-timeout %s: must be positive", opts.upgrade.timeout)
	}
	if opts.upgrade.hardStop <= 0 {
		return cfg, opts, fmt.Errorf("--handover-hard-stop %s: must be positive", opts.upgrade.hardStop)
	}
	if cfg.Listen == "" && cfg.TLS.Listen == "" {
		return cfg, opts, errors.New("--listen or --tls-listen: at least one listener is required")
	}
	cfg.SetDefaults()
	return cfg, opts, cfg.Validate()
}

// selfAddrs lists tether's own listen addresses (--listen, --tls-listen,
// --admin): discovery never makes a node of them.
func selfAddrs(cfg *proxy.Config) []string {
	var out []string
	for _, a := range []string{cfg.Listen, cfg.TLS.Listen, cfg.Admin} {
		if a != "" {
			out = append(out, a)
		}
	}
	return out
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `tether: a load balancer for sticky, WebSocket-heavy sessions.

Usage:
  tether --listen 127.0.0.1:8080 \
         --node CB_Server_1=http://127.0.0.1:8700 \
         --node CB_Server_2=http://127.0.0.1:8701

A request goes to the node named by its stickiness cookie (bare NAME or
anything.NAME), else by its stickiness query parameter, else to the node with
the fewest active requests and sessions. WebSocket upgrades are spliced byte
for byte. A node that fails its health checks or refuses a connection is taken
out; its sticky traffic moves to a healthy node.

Flags:
`)
	fs.VisitAll(func(f *flag.Flag) {
		name, u := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s %s\n    \t%s", f.Name, name, u)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" || f.Name == "ws-idle-timeout" || f.Name == "max-conns" || f.Name == "evict-spread" || f.Name == "drain-delay" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
	fmt.Fprint(w, `
Signals: SIGTERM or SIGINT make /healthz answer 503 at once, keep serving
for --drain-delay, then stop accepting, let requests in flight finish
(up to --drain-timeout), tell WebSocket clients 1001 and exit 0. SIGHUP
re-reads --config (and --admin-token-file) and applies nodes, timeouts and
limits without dropping connections; a bad file keeps the running
configuration. SIGUSR2 starts the binary again (--upgrade-binary) with the
same arguments and hands it the listening sockets and the nodes' states;
once it serves, this process stops accepting and hands it its plain
WebSocket sessions and idle keep-alive connections, then runs what stays
(TLS sessions, requests in flight) until it ends or --handover-hard-stop,
and exits. A binary that cannot take sessions gets the listeners alone and
this process drains as on SIGTERM. A failed hand-over (--handover-timeout)
keeps this process serving and logs why; sessions that fail to move stay
here. SIGTERM or SIGINT during a hand-over kills a new process that does
not serve yet, then drains.
tether --version prints the version.
Exit status: 0 after a clean shutdown, 1 when serving fails, 2 for a bad flag.
`)
}
