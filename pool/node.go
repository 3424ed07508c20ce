package pool

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Sentinel errors of the backend side, checked with errors.Is.
var (
	// ErrNoHealthyNode means the routing table has no node that may take a
	// new session: the client gets 503 with Retry-After.
	ErrNoHealthyNode = errors.New("pool: no healthy node")
	// ErrClosed means the pool was closed (shutdown or reload).
	ErrClosed = errors.New("pool: closed")
	// ErrLocalLimit means a dial failed on tether's own limits (open
	// descriptors, ephemeral ports): the node is not marked failing.
	ErrLocalLimit = errors.New("pool: out of local resources")
	// ErrNodeDown means a node is down (or gone after a reload removed it):
	// Get lends nothing and dials nothing there, and a request whose
	// connection its eviction closed is answered 502 at once.
	ErrNodeDown = errors.New("pool: node down")
)

// Config is the backend side of tether's configuration. The proxy nests it
// as proxy.Config.Pool; cmd/tether fills it from flags.
type Config struct {
	// Nodes are the backends, in the order the operator listed them; names
	// must be unique. At least one node, SRV name or DNS name is required
	// (Nodes, NodeSRV, NodeDNS).
	Nodes []NodeConfig

	// NodeSRV are DNS names whose SRV records list nodes (see discover.go):
	// each target is a node named by the target's first label, dialed at
	// the target's address and the record's port. A "https+" prefix makes
	// them https nodes. Empty means none.
	NodeSRV []string
	// NodeDNS are "HOST:PORT" values whose A and AAAA records list nodes:
	// each address is a node named by the address. A "https+" prefix makes
	// them https nodes. Empty means none.
	NodeDNS []string
	// DNSInterval is the time between two lookups of one NodeSRV or NodeDNS
	// name; an answer is not asked again before its TTL ends. Zero means
	// 10s; negative is invalid.
	DNSInterval time.Duration
	// DNSServer is the "HOST:PORT" of the DNS server asked. Empty means the
	// servers of /etc/resolv.conf, in turn.
	DNSServer string
	// DNSTimeout bounds one DNS query. Zero means 2s; negative is invalid.
	DNSTimeout time.Duration
	// DNSMaxNodes caps the nodes one NodeSRV or NodeDNS name may yield; the
	// records past it are ignored, and logged. Zero means 1000.
	DNSMaxNodes int
	// DNSAllowLoopback lets NodeSRV and NodeDNS answers name loopback
	// addresses (127.0.0.0/8, ::1), for labs and tests whose nodes run on
	// tether's host. False (the zero value) refuses them: a forged or
	// compromised DNS answer could otherwise send clients to any service
	// listening on tether's own host, its admin listener among them.
	// Unspecified, multicast, broadcast and link-local addresses, and
	// SelfAddrs, are refused either way. Refused addresses are logged once
	// per name and counted (DNSLookups.Refused).
	DNSAllowLoopback bool
	// SelfAddrs are tether's own listen addresses ("HOST:PORT": the plain
	// and TLS listeners and the admin listener). The caller sets them from
	// its own configuration (cmd/tether from --listen, --tls-listen and
	// --admin); no flag does. A node discovered at one of them is refused,
	// even with DNSAllowLoopback. A HOST that is unspecified (0.0.0.0, ::)
	// or not an IP address (empty, localhost, a name) stands for every
	// loopback address and every address of this host's interfaces. An
	// entry with port 0 or that does not parse matches nothing. Empty
	// means none.
	SelfAddrs []string

	// ConnectTimeout bounds one dial to a node (TCP connect, and the TLS
	// handshake for https nodes). Zero means 5s.
	ConnectTimeout time.Duration

	// MaxIdle is the number of idle keep-alive connections kept per node.
	// Zero means 128; -1 means keep none (every request dials); below -1 is
	// invalid.
	MaxIdle int

	// IdleTimeout closes a pooled connection that has been idle this long, so
	// tether gives connections back before the node's own keep-alive timeout
	// does. Zero means 60s.
	IdleTimeout time.Duration

	// HealthPath is requested with GET on every node by its health loop.
	// Empty means "/cobrowse/health".
	HealthPath string

	// HealthInterval is the time between two probes of one node, jittered by
	// ±10%. Zero turns active checks off: a node taken out by a failed
	// connection then returns after Cooldown. Negative is invalid.
	HealthInterval time.Duration

	// HealthTimeout bounds one probe (connect, request and answer head). Zero
	// means 1s.
	HealthTimeout time.Duration

	// Rise is how many probes in a row must pass to bring a node back; Fall
	// is how many in a row must fail to take it out. Zero means 2 for each.
	Rise, Fall int

	// Cooldown is how long a node taken out by a failed connection stays out
	// when active checks are off. Zero means 10s.
	Cooldown time.Duration

	// DrainTimeout is how long a node removed by a reload keeps serving its
	// sticky traffic before its WebSockets are told 1001. Zero means 30s.
	DrainTimeout time.Duration

	// EvictSpread spreads the ending of a dead node's WebSocket sessions
	// over this long, to soften the reconnect storm. Zero means all at once.
	EvictSpread time.Duration

	// TLS is the client-side TLS configuration for https nodes. Nil means the
	// system roots with default settings. The pool sets ServerName per node.
	TLS *tls.Config

	// Seed are node facts from the tether this one replaces (see Facts):
	// the first node built with a seed's name and URL, configured or
	// discovered, starts down or drained as the seed says instead of up
	// (configured) or down until its checks pass (discovered). Seeds are
	// read by New only; a reload ignores them. Empty means none.
	Seed []NodeFacts
}

// NodeConfig names one backend.
type NodeConfig struct {
	// Name is the node's application name: the value of the stickiness
	// cookie and URL parameter that select it (e.g. "CB_Server_1").
	Name string
	// URL is "http://host:port" or "https://host:port"; a missing port means
	// 80 or 443. Paths, queries and user info are refused.
	URL string
	// Addr is the "ip:port" dialed. Empty means the URL's host and port.
	// Discovery sets it to the address the URL's host name resolved to:
	// the URL, and so the TLS server name, keep the name, and a new
	// address replaces the node as a new URL does.
	Addr string
}

// SetDefaults fills zero fields with their documented defaults.
func (c *Config) SetDefaults() {
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.MaxIdle == 0 {
		c.MaxIdle = 128
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.HealthPath == "" {
		c.HealthPath = "/cobrowse/health"
	}
	if c.HealthTimeout == 0 {
		c.HealthTimeout = time.Second
	}
	if c.Rise == 0 {
		c.Rise = 2
	}
	if c.Fall == 0 {
		c.Fall = 2
	}
	if c.Cooldown == 0 {
		c.Cooldown = 10 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.DNSInterval == 0 {
		c.DNSInterval = 10 * time.Second
	}
	if c.DNSTimeout == 0 {
		c.DNSTimeout = 2 * time.Second
	}
	if c.DNSMaxNodes == 0 {
		c.DNSMaxNodes = 1000
	}
}

// CheckRiseFall refuses a rise or fall count below 1. Config.Validate
// checks them so after SetDefaults (zero means 2); a command line whose
// flags start at 2 checks them with it before, so an explicit 0 is refused.
func CheckRiseFall(rise, fall int) error {
	if rise < 1 {
		return fmt.Errorf("--rise %d: must be at least 1", rise)
	}
	if fall < 1 {
		return fmt.Errorf("--fall %d: must be at least 1", fall)
	}
	return nil
}

// Validate reports the first bad value, naming the flag an operator sets.
func (c *Config) Validate() error {
	if err := checkNodeURLs(c.Nodes); err != nil {
		return err
	}
	if len(c.Nodes) == 0 && len(c.NodeSRV) == 0 && len(c.NodeDNS) == 0 {
		return errors.New("--node: at least one node is required (NAME=http://HOST:PORT), or --node-srv NAME, or --node-dns HOST:PORT")
	}
	if err := c.validateDiscovery(); err != nil {
		return err
	}
	seen := make(map[string]bool, len(c.Nodes))
	for _, n := range c.Nodes {
		if err := validName(n.Name); err != nil {
			return fmt.Errorf("--node %s=%s: %w", n.Name, n.URL, err)
		}
		if seen[n.Name] {
			return fmt.Errorf("--node %s: name given twice", n.Name)
		}
		seen[n.Name] = true
		if _, _, err := parseNodeURL(n.URL); err != nil {
			return fmt.Errorf("--node %s=%s: %w", n.Name, n.URL, err)
		}
		if _, err := netip.ParseAddrPort(n.Addr); n.Addr != "" && err != nil {
			return fmt.Errorf("--node %s=%s: address %q: want IP:PORT", n.Name, n.URL, n.Addr)
		}
	}
	switch {
	case c.ConnectTimeout < 0:
		return fmt.Errorf("--connect-timeout %s: must not be negative", c.ConnectTimeout)
	case c.IdleTimeout < 0:
		return fmt.Errorf("--pool-idle-timeout %s: must not be negative", c.IdleTimeout)
	case c.HealthInterval < 0:
		return fmt.Errorf("--health-interval %s: must not be negative (0 turns checks off)", c.HealthInterval)
	case c.HealthTimeout < 0:
		return fmt.Errorf("--health-timeout %s: must not be negative", c.HealthTimeout)
	case c.Rise < 0: // zero is the default (SetDefaults)
		return CheckRiseFall(c.Rise, c.Fall)
	case c.EvictSpread < 0:
		return fmt.Errorf("--evict-spread %s: must not be negative", c.EvictSpread)
	case c.Fall < 0:
		return CheckRiseFall(max(c.Rise, 1), c.Fall)
	case !strings.HasPrefix(c.HealthPath, "/") || strings.ContainsAny(c.HealthPath, " \r\n\t"):
		return fmt.Errorf("--health-path %q: must be an absolute path without spaces", c.HealthPath)
	}
	return nil
}

// validName accepts names that can travel in a cookie value and a query
// parameter unescaped: letters, digits and -_.~ (the set of RFC 3986
// unreserved characters), at most 128 bytes.
func validName(s string) error {
	if s == "" {
		return errors.New("empty node name")
	}
	if len(s) > 128 {
		return errors.New("node name longer than 128 bytes")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
			return fmt.Errorf("node name has %q: use letters, digits and -_.~", c)
		}
	}
	return nil
}

// parseNodeURL returns the scheme and host:port of a node URL.
func parseNodeURL(raw string) (scheme, addr string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("bad URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", fmt.Errorf("URL scheme %q: use http or https", u.Scheme)
	}
	if u.Host == "" {
		return "", "", errors.New("URL has no host")
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", "", errors.New("URL must be scheme://host:port only")
	}
	port := u.Port()
	switch n, err := strconv.Atoi(port); {
	case port == "":
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	case err != nil || n < 1 || n > 65535:
		return "", "", fmt.Errorf("port %q: must be a number from 1 to 65535", port)
	}
	return u.Scheme, net.JoinHostPort(u.Hostname(), port), nil
}

// State is a node's place in the routing table.
type State int32

// The states of a node, derived from its facts (see factDown): down while
// its health verdict is failing, else draining while the operator drained
// it or a reload removed it, else up. The table is rebuilt after every
// change.
const (
	StateUp       State = iota // takes new and sticky sessions
	StateDown                  // failed: takes nothing; its sticky sessions fail over
	StateDraining              // keeps sticky sessions, gets no new ones
)

func (s State) String() string {
	switch s {
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	case StateDraining:
		return "draining"
	}
	return "unknown"
}

// The facts behind a node's state, one bit each in the low bits of
// Node.facts. The health verdict and the operator's drain are separate
// facts, each changed by its own writer in one compare-and-swap, so no
// writer overwrites another's: a drained node that goes down and comes back
// is still drained, and a node that failed stays down whatever the operator
// does meanwhile.
const (
	factDown    uint64 = 1 << iota // the health loop or a failed connection: failing
	factDrained                    // the operator's drain: survives down and up
	factRemoved                    // a reload removed the node: it drains until gone
	factGone                       // the drain after its removal ended: nothing is lent or dialled
)

// failUnit is one passive failure in the high 32 bits of Node.facts: its
// failure epoch. Fail adds it in the same compare-and-swap that sets
// factDown, and the health loop clears factDown only in a swap from facts
// whose epoch is the one it read before its probe (rise), so a probe that
// was in flight when live traffic failed cannot bring the node back.
const failUnit uint64 = 1 << 32

// factMask keeps the facts of Node.facts, without the failure epoch.
const factMask = failUnit - 1

// epochOf is the failure epoch that facts hold.
func epochOf(facts uint64) uint64 { return facts >> 32 }

// stateOf is the routing state that facts give.
func stateOf(facts uint64) State {
	switch {
	case facts&(factDown|factGone) != 0:
		return StateDown
	case facts&(factDrained|factRemoved) != 0:
		return StateDraining
	}
	return StateUp
}

// Node is one backend: its address, its idle connections and its counters.
// Counters are atomics read by the balancer and the status page.
type Node struct {
	Name   string
	URL    string // as configured
	Addr   string // host:port dialed
	Scheme string // "http" or "https"

	pool *Pool
	log  zerolog.Logger
	tls  *tls.Config // nil for http nodes

	// active (in-flight requests plus spliced sessions), inFlight and
	// spliced are the balancer's counts: changed only by leases (lease.go),
	// read through Active, InFlight and Sessions.
	active, inFlight, spliced atomic.Int64
	// Served counts requests answered and sessions ended.
	Served atomic.Uint64
	// Dials counts new connections; Reuses counts requests on pooled ones.
	Dials, Reuses atomic.Uint64
	// Stats are the traffic counters behind /metrics.
	Stats Stats

	facts     atomic.Uint64 // factDown, factDrained, factRemoved, factGone, and the failure epoch (failUnit); changed only by compare-and-swap
	since     atomic.Int64  // unix nanos of the last state change
	lastError atomic.Pointer[nodeError]
	gen       uint64        // the reload that built n (0: the first configuration); fixed
	kick      chan struct{} // a passive failure wakes the health loop
	evict     chan struct{} // going down wakes the evict loop
	retire    chan struct{} // removal by a reload wakes the evict loop

	ctx    context.Context // ends the node's loops; a child of the pool's
	cancel context.CancelFunc

	mu   sync.Mutex // guards idle
	idle []*Conn    // LIFO: the most recently used connection is warmest

	smu      sync.Mutex         // guards sessions and busy
	sessions []Evictor          // spliced sessions to end when n goes down (see Registered)
	busy     map[*Conn]struct{} // connections carrying a request now
}

// State returns the node's current state.
func (n *Node) State() State { return stateOf(n.facts.Load()) }

// change sets and clears facts of n in one step: a compare-and-swap loop,
// so changes made at the same time by the health loop, the operator and a
// reload compose and none is lost. It returns the facts before and after.
func (n *Node) change(set, clear uint64) (old, now uint64) {
	for {
		old = n.facts.Load()
		now = old&^clear | set
		if old == now || n.facts.CompareAndSwap(old, now) {
			return old, now
		}
	}
}

// fail sets factDown and counts one passive failure in the failure epoch,
// in one step. It returns the facts before and after.
func (n *Node) fail() (old, now uint64) {
	for {
		old = n.facts.Load()
		now = (old + failUnit) | factDown
		if n.facts.CompareAndSwap(old, now) {
			return old, now
		}
	}
}

// rise clears factDown if no passive failure came since the health loop
// read epoch: the failure epoch of the facts must still be epoch. It
// reports false, changing nothing, when one came.
func (n *Node) rise(epoch uint64) (old, now uint64, ok bool) {
	for {
		old = n.facts.Load()
		if epochOf(old) != epoch {
			return old, old, false
		}
		now = old &^ factDown
		if old == now || n.facts.CompareAndSwap(old, now) {
			return old, now, true
		}
	}
}

// epoch is n's failure epoch: how many passive failures (Fail) it had.
func (n *Node) epoch() uint64 { return epochOf(n.facts.Load()) }

// unusable reports whether n lends and dials nothing: down, or gone.
func (n *Node) unusable() bool { return n.facts.Load()&(factDown|factGone) != 0 }

// Since returns when the node entered its current state.
func (n *Node) Since() time.Time { return time.Unix(0, n.since.Load()) }

// LastError returns the error of the last failed probe or connection, or "".
// It stays after the node recovers; LastErrorAt says when it happened.
func (n *Node) LastError() string {
	if p := n.lastError.Load(); p != nil {
		return p.msg
	}
	return ""
}

// LastErrorAt returns when LastError happened; the zero time if never.
func (n *Node) LastErrorAt() time.Time {
	if p := n.lastError.Load(); p != nil {
		return p.at
	}
	return time.Time{}
}

// Generation returns the change of the node set that built n: 0 for the
// nodes of the first configuration, k for those the k-th change (a reload,
// or a discovery answer that changed the discovered nodes) added, or
// re-added with a new URL or address. Two nodes of one name in a table, the one a reload removed and its
// successor, always differ in it.
func (n *Node) Generation() uint64 { return n.gen }

// nodeError is a node's last failure and its time.
type nodeError struct {
	msg string
	at  time.Time
}

// noteError records msg as n's last error, now.
func (n *Node) noteError(msg string) {
	n.lastError.Store(&nodeError{msg: msg, at: time.Now()})
}
