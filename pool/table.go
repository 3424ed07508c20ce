package pool

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Table is an immutable snapshot of the routing state. The request path
// reads it with one atomic load (Pool.Table) and takes no lock. Every change
// of a node's facts (a health verdict, from the health loop or a failed
// connection's Fail; the operator's drain or enable; a reload or the DNS
// discovery loop adding or removing nodes) is followed by publish, which builds a new one under
// Pool.mu and stores it.
type Table struct {
	all    []*Node          // configured order
	open   []*Node          // nodes that take new sessions: up and not drained
	byName map[string]*Node // every node, by name
	// nameLens lists each distinct name length once, so the "<any>.<name>"
	// cookie form is resolved with one map lookup per length, not per dot.
	nameLens []int
	rr       *atomic.Uint64 // shared by every table of a pool: ties rotate
}

// Nodes returns every configured node in order. The slice is shared: do not
// modify it.
func (t *Table) Nodes() []*Node { return t.all }

// Lookup returns the node a stickiness value names, in either form: the bare
// name, or any value that ends with "." and a name. Nil when none matches.
// It does not allocate: map lookups with string(b) keys are not copied.
func (t *Table) Lookup(v []byte) *Node {
	if len(v) == 0 {
		return nil
	}
	if n := t.byName[string(v)]; n != nil {
		return n
	}
	for _, l := range t.nameLens {
		if l < len(v) && v[len(v)-l-1] == '.' {
			if n := t.byName[string(v[len(v)-l:])]; n != nil {
				return n
			}
		}
	}
	return nil
}

// Routable reports whether n may take a request of a session it owns: it is
// up or draining (draining keeps its sticky sessions).
func (t *Table) Routable(n *Node) bool {
	return n.State() != StateDown
}

// Pick chooses a node for a new session: the open node with the fewest
// active requests and sessions, ties broken in turn so a burst of new
// sessions spreads evenly. skip, if not nil, is passed over (a node that
// just failed). Nil when no node is open.
func (t *Table) Pick(skip *Node) *Node {
	k := len(t.open)
	if k == 0 {
		return nil
	}
	start := int(t.rr.Add(1) % uint64(k))
	var best *Node
	var bestActive int64
	for i := 0; i < k; i++ {
		n := t.open[(start+i)%k]
		if n == skip || n.State() != StateUp {
			continue
		}
		if a := n.active.Load(); best == nil || a < bestActive {
			best, bestActive = n, a
		}
	}
	return best
}

// Pool owns the nodes, their idle connections and their health loops, and
// publishes the routing table.
type Pool struct {
	conf  atomic.Pointer[Config] // swapped whole by Update
	log   zerolog.Logger
	table atomic.Pointer[Table]
	rr    atomic.Uint64

	mu    sync.Mutex // writer-only (never on the request path): guards nodes, close and gen, and orders table rebuilds (publish)
	nodes []*Node
	close bool
	gen   uint64 // changes of the node set applied (reconcile); guarded by mu

	// found are the nodes discovery found last (see discover.go), merged
	// with the configured ones by reconcile; shadowed names those found
	// that a configured node of the same name hides (logged once). Both
	// guarded by mu.
	found    []NodeConfig
	shadowed map[string]bool
	dns      dnsCounts            // lookups by result, for metrics
	redisc   chan struct{}        // wakes the discovery loop after a reload
	seeds    map[string]NodeFacts // Config.Seed by name, until used; guarded by mu

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds the nodes of cfg, publishes the first table (every node up) and
// starts one health loop per node and the idle-connection sweeper. Defaults
// are applied here for zero fields.
func New(cfg Config, log zerolog.Logger) (*Pool, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pool{log: log, redisc: make(chan struct{}, 1), shadowed: map[string]bool{}}
	p.conf.Store(&cfg)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.mu.Lock()
	if len(cfg.Seed) > 0 {
		p.seeds = make(map[string]NodeFacts, len(cfg.Seed))
		for _, f := range cfg.Seed {
			p.seeds[f.Name] = f
		}
	}
	for _, nc := range cfg.Nodes {
		p.nodes = append(p.nodes, p.newNode(nc, &cfg, false))
	}
	p.mu.Unlock()
	p.publish()
	p.wg.Go(p.sweepLoop)
	p.wg.Go(p.discoverLoop)
	return p, nil
}

// cfg returns the configuration in force: one atomic load.
func (p *Pool) cfg() *Config { return p.conf.Load() }

// newNode builds a node and starts its health and evict loops. With down
// set (a discovered node) and active checks on, it starts down and joins
// after Rise good probes.
func (p *Pool) newNode(nc NodeConfig, cfg *Config, down bool) *Node {
	scheme, addr, _ := parseNodeURL(nc.URL)
	host := addr
	if nc.Addr != "" {
		addr = nc.Addr
	}
	n := &Node{
		Name:   nc.Name,
		URL:    nc.URL,
		Addr:   addr,
		Scheme: scheme,
		gen:    p.gen, // newNode runs under p.mu
		pool:   p,
		log:    p.log.With().Str("node", nc.Name).Str("addr", addr).Logger(),
		kick:   make(chan struct{}, 1),
		evict:  make(chan struct{}, 1),
		retire: make(chan struct{}, 1),
		busy:   make(map[*Conn]struct{}),
	}
	n.ctx, n.cancel = context.WithCancel(p.ctx)
	if scheme == "https" {
		n.tls = nodeTLS(cfg.TLS, host)
	}
	if down && cfg.HealthInterval > 0 {
		n.facts.Store(factDown)
	}
	n.since.Store(time.Now().UnixNano())
	p.seed(n)
	p.wg.Go(n.healthLoop)
	p.wg.Go(n.evictLoop)
	return n
}

// nodeTLS returns the client TLS config for one https node: base (or
// defaults) with ServerName set to the node's host name.
func nodeTLS(base *tls.Config, addr string) *tls.Config {
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		c.ServerName = host
	}
	c.NextProtos = []string{"http/1.1"}
	return c
}

// Table returns the current routing table: one atomic load.
func (p *Pool) Table() *Table { return p.table.Load() }

// Node returns the node with the given name, or nil.
func (p *Pool) Node(name string) *Node { return p.Table().byName[name] }

// publish rebuilds the table from the nodes' states and stores it. Every
// change of a node's facts is followed by a publish, and publish reads the
// facts under mu: the last table stored sees every change.
func (p *Pool) publish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := &Table{
		all:    slices.Clone(p.nodes),
		byName: make(map[string]*Node, len(p.nodes)),
		rr:     &p.rr,
	}
	lens := map[int]bool{}
	for _, n := range p.nodes {
		if old, ok := t.byName[n.Name]; !ok || old.Removed() {
			t.byName[n.Name] = n // a node being removed yields its name to its successor
		}
		if !lens[len(n.Name)] {
			lens[len(n.Name)] = true
			t.nameLens = append(t.nameLens, len(n.Name))
		}
		if n.State() == StateUp {
			t.open = append(t.open, n)
		}
	}
	p.table.Store(t)
}

// nodeList returns a copy of the pool's nodes, taken under mu.
func (p *Pool) nodeList() []*Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.nodes)
}

// setHealth records the health verdict on n: down (ok false, with the
// reason) or healthy. It reports whether the verdict changed.
func (n *Node) setHealth(ok bool, reason string) bool {
	var old, now uint64
	if ok {
		old, now = n.change(0, factDown)
	} else {
		old, now = n.change(factDown, 0)
	}
	n.changed(old, now, reason)
	return old != now
}

// changed follows a change of n's facts from old to now: when the state
// changed it records when and logs it, and a node gone down has its idle
// connections closed and its evict loop woken; the table is republished.
// Concurrent changes may run it out of order: what it does holds for any
// order (the evict loop looks at the state itself, publish reads the facts
// as they are by then).
func (n *Node) changed(old, now uint64, reason string) {
	if old == now {
		return
	}
	was, s := stateOf(old), stateOf(now)
	if was != s {
		n.since.Store(time.Now().UnixNano())
		if s == StateDown {
			n.closeIdle()
			n.signalEvict()
			n.log.Warn().Str("state", s.String()).Str("was", was.String()).Str("error", reason).Msg("node down")
		} else {
			n.log.Warn().Str("state", s.String()).Str("was", was.String()).Msg("node state")
		}
	}
	n.pool.publish()
}

// Removed reports whether a reload removed n: it drains until it is gone.
func (n *Node) Removed() bool { return n.facts.Load()&factRemoved != 0 }

// Drain stops new sessions to n; its sticky sessions stay. Enable undoes it.
// The drain is a fact of its own: it holds while n is down and after n
// comes back.
func (n *Node) Drain() {
	old, now := n.change(factDrained, 0)
	if old&factDrained == 0 {
		n.log.Warn().Msg("node draining")
		n.changed(old, now, "")
	}
}

// Enable returns a drained node to rotation (once it is healthy; a node
// that is down stays down).
func (n *Node) Enable() {
	if n.Removed() {
		return // removed by a reload: it drains until it is gone
	}
	old, now := n.change(0, factDrained)
	if old&factDrained != 0 {
		n.log.Warn().Msg("node enabled")
		n.changed(old, now, "")
	}
}

// Close stops the health loops, waits for them and closes idle connections.
// Connections handed out stay open: their owners close or return them, and
// Put closes them after Close.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.close = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	nodes := slices.Clone(p.nodes)
	p.mu.Unlock()
	for _, n := range nodes {
		n.closeIdle()
	}
	return nil
}
