package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/admin"
	"github.com/tether-lb/tether/proxy/internal/wire"
	"github.com/tether-lb/tether/tlsterm"
)

// Config is the whole of tether's configuration: cmd/tether builds one value
// from flags and the --config file and hands it to New. A reload builds a new
// value; a running Server never mutates its own.
type Config struct {
	// Listen is the plain-HTTP listen address ("127.0.0.1:8080"). Empty
	// means no plain listener.
	Listen string

	// Admin is the listen address of the admin endpoints (/metrics,
	// /status, /healthz, /livez, node drain and enable). Empty means none. An
	// address that is not loopback needs AdminTokenFile.
	Admin string
	// AdminTokenFile holds a bearer token every admin request but /healthz
	// and /livez must carry. Empty means none (then Admin must be loopback). A reload
	// re-reads it; a file that cannot be read fails the reload and keeps
	// the running token.
	AdminTokenFile string
	// AdminHosts are the names (no port) the admin listener answers to in
	// Host, beside IP literals and localhost; any other Host gets 421.
	// Empty means none.
	AdminHosts []string
	// ReusePort opens listeners with SO_REUSEPORT, so that a new tether can
	// start on the same ports before the old one is told to stop.
	ReusePort bool
	// SpliceLoops is the number of epoll loops that splice plain WebSocket
	// sessions (an idle one then costs a few hundred bytes and no
	// goroutine). Zero means one per CPU (GOMAXPROCS); -1 means goroutines
	// only (below -1 is invalid). TLS sessions always run on goroutines.
	SpliceLoops int
	// HTTPLoops is the number of epoll loops that hold idle plain
	// keep-alive client connections and read their requests when epoll
	// reports them readable (no goroutine, buffer or deadline per idle
	// connection, and no read that finds nothing). Zero means one loop per
	// CPU (GOMAXPROCS); -1 means none: every connection keeps a goroutine;
	// below -1 is invalid. TLS connections always keep their goroutine.
	HTTPLoops int
	// Pprof serves Go's profiler under /debug/pprof/ on the admin listener.
	Pprof bool

	// StickyCookie is the stickiness cookie whose value names a node (bare,
	// or "<anything>.<name>"). Empty means "gcbSessionServer".
	StickyCookie string
	// StickyParam is the query parameter naming a node, for clients whose
	// cookies were refused. Empty means "co-browse-node-id".
	StickyParam string

	// HeaderTimeout bounds reading one request head, from its first byte to
	// its blank line (408 and close). Zero means 10s.
	HeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive client connection that sends nothing
	// for this long between requests. Zero means 120s.
	IdleTimeout time.Duration
	// UpstreamTimeout is how long a node may take to start its answer after
	// the request was sent: long enough for long polls (504 after). Zero
	// means 120s.
	UpstreamTimeout time.Duration
	// WriteTimeout bounds one write to a client or a node (a peer that stops
	// reading). Zero means 30s.
	WriteTimeout time.Duration
	// BodyTimeout bounds the wait for each read of a body in flight (request
	// body from a client, answer body from a node). Zero means 60s.
	BodyTimeout time.Duration
	// BodyMinRate is the least a request body must average, in bytes a
	// second, once BodyTimeout has passed since it began: a read of it ends
	// by BodyTimeout + bytes read / BodyMinRate after its start (408 and
	// close, the node connection closed too). Zero means 1024; -1
	// means no minimum (each wait is still bounded by BodyTimeout); below -1
	// is invalid.
	BodyMinRate int64
	// LingerTimeout bounds a lingering close: after an answer that refuses
	// a request not read whole (400, 408, 413, 431), tether reads and drops
	// what the client still sends for at most this long (and 256 KiB)
	// before it closes, so the answer is not lost to a reset. Zero means 1s.
	LingerTimeout time.Duration
	// WSIdleTimeout ends a spliced WebSocket session when no byte moved
	// either way for this long. Zero means never.
	WSIdleTimeout time.Duration

	// MaxHeaderBytes bounds a request or answer head (431 for a client's,
	// 502 for a node's). Zero means 64 KiB.
	MaxHeaderBytes int
	// MaxHeaderFields bounds the number of field lines in a request head
	// (431 and close). Zero means 100. Answers from nodes are bounded by
	// MaxHeaderBytes only.
	MaxHeaderFields int
	// MaxBodyBytes bounds a request body: a Content-Length past it is
	// answered 413 before any node is asked; a chunked body that grows past
	// it is cut (the node connection closed) and answered 413. Zero means no
	// limit.
	MaxBodyBytes int64
	// MaxConns bounds concurrent client connections; past it, new
	// connections are closed at once. Zero means half the process's
	// descriptor limit less a reserve (each connection may hold a node
	// connection too), so tether never runs out of descriptors mid-request.
	// -1 means no limit (below -1 is invalid). A refused connection is
	// counted (tether_refused_connections_total) and logged, one line a
	// second at most.
	MaxConns int

	// ProxyProtocol requires a PROXY protocol header (v1 or v2) at the start
	// of every connection on both listeners (before the ClientHello on the
	// TLS one), within HeaderTimeout. Its client address becomes the
	// connection's: X-Forwarded-For, X-Real-IP and the access log's remote.
	// A v2 LOCAL header (the L4 tier's own health check) or v1 UNKNOWN keeps
	// the socket's address. A connection from a source outside
	// ProxyProtocolFrom, or with a missing, malformed or oversized header, is
	// closed, counted (tether_refused_connections_total{reason="proxy_protocol"})
	// and logged, one line a second at most; one closed before its first
	// byte (a TCP health check) is not counted. False means no header is
	// read. A reload applies it to new connections.
	ProxyProtocol bool
	// ProxyProtocolFrom are the networks the L4 tier sends from, the only
	// sources whose PROXY protocol header is believed. Required with
	// ProxyProtocol (there is no default: trusting any source would let a
	// client name any address); empty without it.
	ProxyProtocolFrom []netip.Prefix

	// DrainDelay is how long tether, told to stop, goes on accepting and
	// serving while /healthz answers 503, so that an L4 tier's health
	// checks take it out of rotation before its listeners close (see
	// Server.Withdraw). Zero means none: the drain begins at once.
	DrainDelay time.Duration

	// AccessLog writes one line per request and per WebSocket session.
	AccessLog bool

	// TLS is TLS termination (--tls-listen, certificates) and the client
	// side of bridging to https nodes.
	TLS tlsterm.Config

	// Pool is the backend side: nodes, connect timeout, health checks.
	Pool pool.Config
}

// SetDefaults fills zero fields with their documented defaults.
func (c *Config) SetDefaults() {
	if c.StickyCookie == "" {
		c.StickyCookie = "gcbSessionServer"
	}
	if c.StickyParam == "" {
		c.StickyParam = "co-browse-node-id"
	}
	if c.HeaderTimeout == 0 {
		c.HeaderTimeout = 10 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = 120 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = 60 * time.Second
	}
	if c.LingerTimeout == 0 {
		c.LingerTimeout = time.Second
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.BodyMinRate == 0 {
		c.BodyMinRate = 1024
	}
	if c.MaxHeaderFields == 0 {
		c.MaxHeaderFields = 100
	}
	if c.MaxConns == 0 {
		c.MaxConns = maxConnsForLimit()
	}
	c.TLS.SetDefaults()
	c.Pool.SetDefaults()
}

// Validate reports the first bad value, naming its flag.
func (c *Config) Validate() error {
	for _, a := range []struct{ flag, addr string }{
		{"--listen", c.Listen}, {"--tls-listen", c.TLS.Listen}, {"--admin", c.Admin},
	} {
		if err := checkListenAddr(a.addr); a.addr != "" && err != nil {
			return fmt.Errorf("%s %q: %w", a.flag, a.addr, err)
		}
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"--header-timeout", c.HeaderTimeout},
		{"--idle-timeout", c.IdleTimeout},
		{"--upstream-timeout", c.UpstreamTimeout},
		{"--write-timeout", c.WriteTimeout},
		{"--body-timeout", c.BodyTimeout},
		{"--ws-idle-timeout", c.WSIdleTimeout},
		{"--linger-timeout", c.LingerTimeout},
		{"--drain-delay", c.DrainDelay},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s %s: must not be negative", d.flag, d.v)
		}
	}
	if c.MaxBodyBytes < 0 {
		return fmt.Errorf("--max-body-bytes %d: must not be negative (0: no limit)", c.MaxBodyBytes)
	}
	if c.MaxHeaderBytes < 1024 || c.MaxHeaderBytes > 1<<20 {
		return fmt.Errorf("--max-header-bytes %d: must be between 1024 and 1048576", c.MaxHeaderBytes)
	}
	if err := c.checkCounts(); err != nil {
		return err
	}
	if err := admin.CheckSettings(c.Admin, c.AdminTokenFile, c.AdminHosts); err != nil {
		return err
	}
	if c.BodyMinRate < -1 || c.BodyMinRate > 1<<30 {
		return fmt.Errorf("--body-min-rate %d: must be between 0 and 1073741824 bytes a second (-1: none)", c.BodyMinRate)
	}
	if c.MaxHeaderFields < 1 || c.MaxHeaderFields > 10000 {
		return fmt.Errorf("--max-header-fields %d: must be between 1 and 10000", c.MaxHeaderFields)
	}
	if err := c.checkProxyProtocol(); err != nil {
		return err
	}
	if !wire.IsToken(c.StickyCookie) {
		return fmt.Errorf("--sticky-cookie %q: must be a cookie name (token characters)", c.StickyCookie)
	}
	if !wire.IsToken(c.StickyParam) {
		return fmt.Errorf("--sticky-param %q: must be a plain parameter name", c.StickyParam)
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	return c.Pool.Validate()
}

// checkCounts checks the counts whose -1 has a meaning (and nothing below
// it does) and --drain-timeout.
func (c *Config) checkCounts() error {
	for _, n := range []struct {
		flag, minusOne string
		v              int
	}{
		{"--max-conns", "no limit", c.MaxConns},
		{"--splice-loops", "goroutines only", c.SpliceLoops},
		{"--http-loops", "a goroutine per connection", c.HTTPLoops},
		{"--tls-max-handshakes", "no cap", c.TLS.MaxHandshakes},
		{"--pool-max-idle", "keep none", c.Pool.MaxIdle},
	} {
		if n.v < -1 {
			return fmt.Errorf("%s %d: must be 0 or more, or -1 (%s)", n.flag, n.v, n.minusOne)
		}
	}
	if c.Pool.DrainTimeout < 0 {
		return fmt.Errorf("--drain-timeout %s: must not be negative", c.Pool.DrainTimeout)
	}
	return nil
}

// checkProxyProtocol requires the trusted sources with the PROXY protocol,
// and the protocol with them: either alone is a mistake.
func (c *Config) checkProxyProtocol() error {
	switch {
	case c.ProxyProtocol && len(c.ProxyProtocolFrom) == 0:
		return errors.New("--proxy-protocol needs --proxy-protocol-from CIDR[,CIDR]: the networks of the L4 tier that sends the header")
	case !c.ProxyProtocol && len(c.ProxyProtocolFrom) > 0:
		return errors.New("--proxy-protocol-from is set without --proxy-protocol")
	}
	for _, p := range c.ProxyProtocolFrom {
		if !p.IsValid() {
			return fmt.Errorf("--proxy-protocol-from %s: not a network", p)
		}
		if p.Addr().Is4In6() {
			// Sources are compared as IPv4 (a dual-stack listener's
			// ::ffff:a.b.c.d is a.b.c.d): such a network would match none.
			return fmt.Errorf("--proxy-protocol-from %s: an IPv4-mapped network matches no source; write it as IPv4 (%s)", p, netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0)).Masked())
		}
	}
	return nil
}

// checkListenAddr checks a listen address as host:port with a numeric port
// (0 or none lets the system choose), so a typo is a configuration error at start
// and not a listener that fails after it.
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" { // "host:" is port 0, as for net.Listen
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || port[0] == '+' || port[0] == '-' {
		return fmt.Errorf("port %q: must be a number from 0 to 65535", port)
	}
	return nil
}

// fdReserve is kept out of --max-conns for listeners, the admin side, health
// probes, logs and idle pooled connections.
const fdReserve = 256

// maxConnsForLimit derives the default --max-conns from the descriptor
// limit: every client connection may hold a node connection too.
func maxConnsForLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return -1
	}
	return max(int(lim.Cur)-fdReserve, 2) / 2
}
