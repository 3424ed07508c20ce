package pool

import (
	"context"
	"time"
)

// Close codes tether sends toward clients of a node it ends sessions for.
const (
	// CloseServiceRestart (1012) tells a client its node went down: start a
	// new session.
	CloseServiceRestart uint16 = 1012
	// CloseGoingAway (1001) tells a client tether is shutting down or the
	// node was removed.
	CloseGoingAway uint16 = 1001
)

// Evictor is a spliced session that its node can end: Evict must return at
// once (it only flags the session and wakes its copier) and may be called
// more than once. A session record embeds Registered, which keeps its place
// in its node's registry.
type Evictor interface {
	Evict(code uint16)
	registered() *Registered
}

// Registered is an Evictor's place in its node's registry: embed it in the
// session's record. Its zero value is "not registered". It costs 4 bytes in
// the record and 16 in the registry, where a set would cost about 50 per
// session.
type Registered struct {
	slot int32 // index in the node's sessions plus one; 0 = not registered
}

func (r *Registered) registered() *Registered { return r }

// Register records a spliced session of n so that n going down ends it.
// Unregister removes it when the session ends. A session registers with one
// node at a time. A session of a node that is down already is told 1012 at
// once, and one of a node gone after its removal 1001.
func (n *Node) Register(e Evictor) {
	n.smu.Lock()
	n.sessions = append(n.sessions, e)
	e.registered().slot = int32(len(n.sessions))
	n.smu.Unlock()
	// The facts are read after the session is in the registry: an eviction
	// that took the registry before it set them first, so one of the two
	// tells the session.
	switch f := n.facts.Load(); {
	case f&factGone != 0:
		e.Evict(CloseGoingAway)
	case f&factDown != 0:
		e.Evict(CloseServiceRestart)
	}
}

// CountEviction counts one WebSocket session of n that ended because n
// failed: told 1012, or cut mid-frame by the node's death. The session's
// splice calls it, at most once per session, whether the health loop's
// eviction or the node's own end of the stream came first.
func (n *Node) CountEviction() { n.Stats.Evictions.Add(1) }

// Unregister forgets a session registered with Register: the last session
// takes its place. The registry's array shrinks when three quarters of it
// are free, so a storm of sessions that ended leaves no large array behind.
func (n *Node) Unregister(e Evictor) {
	n.smu.Lock()
	defer n.smu.Unlock()
	r := e.registered()
	i := int(r.slot) - 1
	if i < 0 || i >= len(n.sessions) || n.sessions[i] != e {
		return // not registered here
	}
	last := len(n.sessions) - 1
	if i != last {
		moved := n.sessions[last]
		n.sessions[i] = moved
		moved.registered().slot = int32(i + 1)
	}
	n.sessions[last] = nil
	n.sessions = n.sessions[:last]
	r.slot = 0
	if c := cap(n.sessions); c > 64 && len(n.sessions) < c/4 {
		n.sessions = append(make([]Evictor, 0, c/2), n.sessions...)
	}
}

// sessionList returns a copy of n's registered sessions.
func (n *Node) sessionList() []Evictor {
	n.smu.Lock()
	defer n.smu.Unlock()
	return append([]Evictor(nil), n.sessions...)
}

// lend records c as carrying a request now; an eviction closes it. On a
// node that is down or gone it records nothing and reports false: the
// caller closes c. The facts are read under smu, after which an eviction
// takes busy: either it sees c or lend sees the node down.
func (n *Node) lend(c *Conn) bool {
	n.smu.Lock()
	defer n.smu.Unlock()
	if n.unusable() {
		return false
	}
	n.busy[c] = struct{}{}
	return true
}

// inUse returns copies of n's lent connections and registered sessions.
func (n *Node) inUse() ([]*Conn, []Evictor) {
	n.smu.Lock()
	defer n.smu.Unlock()
	conns := make([]*Conn, 0, len(n.busy))
	for c := range n.busy {
		conns = append(conns, c)
	}
	return conns, append([]Evictor(nil), n.sessions...)
}

// unlend forgets c as carrying a request.
func (n *Node) unlend(c *Conn) {
	n.smu.Lock()
	delete(n.busy, c)
	n.smu.Unlock()
}

// evict closes a lent connection because its node went down or is gone: the
// request on it fails, and Evicted tells its borrower why.
func (c *Conn) evict() {
	c.evicted.Store(true)
	c.Conn.Close()
}

// Evicted reports whether the connection was closed by its node's eviction
// (the node went down, or its drain after a reload ended): a request on it
// is answered at once, not retried.
func (c *Conn) Evicted() bool { return c.evicted.Load() }

// Close closes a lent connection instead of giving it back.
func (c *Conn) Close() error {
	c.Node.unlend(c)
	return c.Conn.Close()
}

// Detach hands a lent connection over to a spliced session: the pool no
// longer counts it as carrying a request (the session registers itself with
// Register instead), and the caller owns and closes c.Conn.
func (c *Conn) Detach() {
	c.Node.unlend(c)
}

// evictLoop ends what depends on n each time n goes down: requests in flight
// (their connections are closed, so they are answered 502) and spliced
// sessions (each told with Evict(1012), spread over EvictSpread when set).
func (n *Node) evictLoop() {
	ctx := n.ctx
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.retire:
			n.finishRemoval()
			return
		case <-n.evict:
		}
		if n.State() != StateDown {
			continue
		}
		conns, sessions := n.inUse()
		for _, c := range conns {
			c.evict()
		}
		// Each session counts itself (CountEviction) when it acts on the
		// 1012, unless its node's end reached it first and it counted then.
		start := time.Now()
		n.pool.evictSpread(ctx, sessions, CloseServiceRestart, n.pool.cfg().EvictSpread, n.isDown)
		if len(conns) > 0 || len(sessions) > 0 {
			n.log.Warn().Int("requests", len(conns)).Int("sessions", len(sessions)).
				Dur("took", time.Since(start)).Msg("node down: in-flight requests and sessions ended")
		}
	}
}

// isDown reports whether n is down (an eviction of its sessions goes on).
func (n *Node) isDown() bool { return n.State() == StateDown }

// evictSpread tells each session to end with code, all at once or, with
// spread set, evenly over that time so the clients do not reconnect as one
// storm. It stops early when ctx ends or still() turns false (the node came
// back up: the rest keep their sessions).
func (p *Pool) evictSpread(ctx context.Context, sessions []Evictor, code uint16, spread time.Duration, still func() bool) {
	if spread <= 0 || len(sessions) < 2 {
		for _, e := range sessions {
			e.Evict(code)
		}
		return
	}
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for i, e := range sessions {
		at := start.Add(spread * time.Duration(i) / time.Duration(len(sessions)))
		if d := time.Until(at); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		if !still() {
			return
		}
		e.Evict(code)
	}
}

// EvictAll tells every spliced session of every node to end with code
// (1001 when tether shuts down), spread evenly over spread. It returns when
// all were told, or when ctx ends.
func (p *Pool) EvictAll(ctx context.Context, code uint16, spread time.Duration) {
	var sessions []Evictor
	for _, n := range p.nodeList() {
		sessions = append(sessions, n.sessionList()...)
	}
	if len(sessions) > 0 {
		p.log.Info().Int("sessions", len(sessions)).Uint16("code", code).Dur("spread", spread).Msg("ending WebSocket sessions")
	}
	p.evictSpread(ctx, sessions, code, spread, always)
}

func always() bool { return true }

// signalEvict wakes evictLoop.
func (n *Node) signalEvict() {
	select {
	case n.evict <- struct{}{}:
	default:
	}
}
