package pool

import (
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
// more than once.
type Evictor interface {
	Evict(code uint16)
}

// Register records a spliced session of n so that n going down ends it.
// Unregister removes it when the session ends.
func (n *Node) Register(e Evictor) {
	n.smu.Lock()
	n.sessions[e] = struct{}{}
	n.smu.Unlock()
	if n.State() == StateDown {
		e.Evict(CloseServiceRestart)
	}
}

// Unregister forgets a session registered with Register.
func (n *Node) Unregister(e Evictor) {
	n.smu.Lock()
	delete(n.sessions, e)
	n.smu.Unlock()
}

// lend records c as carrying a request now; an eviction closes it.
func (n *Node) lend(c *Conn) {
	n.smu.Lock()
	n.busy[c] = struct{}{}
	n.smu.Unlock()
}

// unlend forgets c as carrying a request.
func (n *Node) unlend(c *Conn) {
	n.smu.Lock()
	delete(n.busy, c)
	n.smu.Unlock()
}

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
	ctx := n.pool.ctx
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.evict:
		}
		if n.State() != StateDown {
			continue
		}
		n.smu.Lock()
		conns := make([]*Conn, 0, len(n.busy))
		for c := range n.busy {
			conns = append(conns, c)
		}
		sessions := make([]Evictor, 0, len(n.sessions))
		for e := range n.sessions {
			sessions = append(sessions, e)
		}
		n.smu.Unlock()
		for _, c := range conns {
			c.Conn.Close()
		}
		start := time.Now()
		n.evictSpread(sessions)
		if len(conns) > 0 || len(sessions) > 0 {
			n.log.Warn().Int("requests", len(conns)).Int("sessions", len(sessions)).
				Dur("took", time.Since(start)).Msg("node down: in-flight requests and sessions ended")
		}
	}
}

// evictSpread tells each session to end, all at once or, with EvictSpread
// set, evenly over that time so the clients do not reconnect as one storm.
func (n *Node) evictSpread(sessions []Evictor) {
	spread := n.pool.cfg.EvictSpread
	if spread <= 0 || len(sessions) < 2 {
		for _, e := range sessions {
			e.Evict(CloseServiceRestart)
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
			case <-n.pool.ctx.Done():
				return
			case <-t.C:
			}
		}
		if n.State() != StateDown {
			return // back up: the rest keep their sessions
		}
		e.Evict(CloseServiceRestart)
	}
}

// signalEvict wakes evictLoop.
func (n *Node) signalEvict() {
	select {
	case n.evict <- struct{}{}:
	default:
	}
}
