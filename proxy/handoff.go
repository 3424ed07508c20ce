package proxy

// The hand-over of live traffic to a new tether process (after the
// listeners, SIGUSR2): the old server freezes its plain loop sessions and
// its idle plain keep-alive connections (HandOff), the new one takes their
// descriptors (Adopt) and runs them (Start) once the old one has let them go
// (Commit); the old server then runs what it kept until it ends (Retire).
// What cannot move stays: TLS connections and sessions (their state is in
// crypto/tls), goroutine-engine sessions, sessions being evicted,
// connections in the middle of a request.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"sync"
	"time"

	"github.com/tether-lb/tether/proxy/internal/route"
	"github.com/tether-lb/tether/proxy/internal/sockio"
	"github.com/tether-lb/tether/proxy/internal/splice"
	"golang.org/x/sys/unix"
)

// SessionMeta is what the access log and the node's counts need of a handed
// session, with the splice's own state. It encodes as JSON.
type SessionMeta struct {
	Node   string       `json:"node"`   // node name; the new process finds its node by it
	Remote string       `json:"remote"` // client IP as logged
	Line   string       `json:"line"`   // method, a space and the request target, as logged
	Status int          `json:"status"` // the node's answer to the upgrade (101)
	Why    string       `json:"why"`    // why the request went to its node, as logged
	Start  time.Time    `json:"start"`  // wall clock of the session's request start
	Splice splice.Moved `json:"splice"`
}

// HandedSession is one session handed to another process: its two
// descriptors (this process's until Commit) and its state.
type HandedSession struct {
	Client, Node int
	Meta         SessionMeta
}

// ConnMeta is what a handed idle keep-alive client connection carries
// along: it had no request under way and nothing buffered. It encodes as
// JSON.
type ConnMeta struct {
	Remote string    `json:"remote"` // client IP as logged (a PROXY protocol header's, if any)
	Served int       `json:"served"` // requests answered on it so far
	Born   time.Time `json:"born"`   // when it was accepted
}

// HandedConn is one idle keep-alive connection handed to another process:
// its descriptor (this process's until Commit) and its state.
type HandedConn struct {
	FD   int
	Meta ConnMeta
}

// Handoff is what a server is handing to another process: its plain loop
// sessions and idle plain keep-alive connections, frozen (nothing read or
// written on them) until Commit or Abort, one of which must be called,
// once. Its methods are not safe for concurrent use.
type Handoff struct {
	s        *Server
	loops    *splice.Loops    // the server's engine when sessions were frozen; nil otherwise
	frozen   []*splice.Frozen // the sessions, off their loops
	records  []*spliced       // frozen[i]'s record
	sessions []HandedSession
	conns    []*conn // idle connections whose goroutines let go of them
	handed   []HandedConn
	over     bool // Commit or Abort ran
}

// HandOff freezes what this server can hand to another process and
// returns it. Call it after StopAccepting: connections accepted later are
// not looked at. Sessions move only when the server runs them on splice
// loops; a session in any state but plainly running (evicted, lingering,
// half-closed) stays, and so does a connection busy with a request: Retire
// runs them to their end. From now on every answer this server gives says
// Connection: close, whether the hand-over commits or not: this process
// retires either way (the listeners are the other's).
func (s *Server) HandOff() *Handoff {
	s.handing.Store(true)
	h := &Handoff{s: s}
	if ls, ok := s.engine.(*splice.Loops); ok {
		h.freezeSessions(ls)
	}
	h.takeIdle()
	return h
}

// freezeSessions takes the plainly running sessions off ls and describes
// them; any it cannot describe goes back at once.
func (h *Handoff) freezeSessions(ls *splice.Loops) {
	var keep []*splice.Frozen
	for _, f := range ls.Freeze() {
		u, ok := f.Ender().(*spliced)
		if !ok || u.lease.Node() == nil {
			keep = append(keep, f) // not one of this server's sessions as it knows them: it stays
			continue
		}
		client, node := f.FDs()
		h.frozen = append(h.frozen, f)
		h.records = append(h.records, u)
		h.sessions = append(h.sessions, HandedSession{Client: client, Node: node, Meta: SessionMeta{
			Node:   u.lease.Node().Name,
			Remote: u.remote,
			Line:   u.line,
			Status: int(u.status),
			Why:    u.why.String(),
			Start:  h.s.started.Add(time.Duration(u.start)).Round(0), // wall clock: another process's monotonic clock is not ours
			Splice: f.Moved(),
		}})
	}
	if len(keep) > 0 {
		ls.Thaw(keep)
	}
	if len(h.frozen) > 0 {
		h.loops = ls
	}
}

// takeIdle takes every idle plain keep-alive connection: from the
// goroutine that waits on it, which, woken by a past read deadline, lets go
// of it without reading, or from its http loop (--http-loops), whose epoll
// lets go of it. Bytes that arrived stay in the socket. Each taken
// connection's descriptor is duplicated for the other process; this
// process's copies are closed by Commit, with close(2) only.
func (h *Handoff) takeIdle() {
	cs := &h.s.conns
	var letGo sync.WaitGroup
	var taken, onLoops []*conn
	cs.mu.Lock()
	for _, c := range cs.active {
		if c.secure {
			continue
		}
		if _, ok := c.nc.(*net.TCPConn); !ok && !c.lc.cold {
			continue
		}
		if c.onLoops() {
			onLoops = append(onLoops, c) // taken below, outside cs.mu: a loop closing one takes it
			continue
		}
		if c.state.Load() != connIdle {
			continue
		}
		letGo.Add(1)
		c.letGo = &letGo
		if !c.state.CompareAndSwap(connIdle, connHanded) {
			letGo.Done() // a request began meanwhile
			continue
		}
		c.nc.SetReadDeadline(pastDeadline)
		taken = append(taken, c)
	}
	cs.mu.Unlock()
	for _, c := range onLoops {
		// Idle on its loop: owning it (busy) keeps the loop from serving or
		// closing it; readiness meanwhile only marks it ready.
		if h.s.http.Take(c) {
			taken = append(taken, c)
		}
	}
	letGo.Wait()
	for _, c := range taken {
		fd, err := c.dupSocket()
		if err != nil {
			h.s.log.Warn().Err(err).Str("remote", c.remoteIP).Msg("hand-over: connection kept")
			c.resume()
			continue
		}
		h.conns = append(h.conns, c)
		h.handed = append(h.handed, HandedConn{FD: fd, Meta: ConnMeta{Remote: c.remoteIP, Served: int(c.served), Born: c.bornAt()}})
	}
}

// resume puts a connection taken by HandOff back to waiting for its next
// request; bytes that arrived meanwhile are read at once.
func (c *conn) resume() {
	c.state.Store(connBusy)
	go c.await()
}

// await serves a connection that waits for its next request, holding
// nothing: on the http loops when they run (loopServe reads what is there,
// then parks it), else on a goroutine of its own (run).
func (c *conn) await() {
	if c.onLoops() {
		c.loopServe()
		return
	}
	c.run(false)
}

// Sessions returns the frozen sessions. The slice is h's: do not modify it.
func (h *Handoff) Sessions() []HandedSession { return h.sessions }

// Conns returns the idle connections taken. The slice is h's: do not modify
// it.
func (h *Handoff) Conns() []HandedConn { return h.handed }

// Commit lets everything handed go: the other process has it. This
// process's descriptors close with close(2) only (the peers see nothing),
// each session's node lease and connection count are given back with no
// access-log line and no eviction counted (the other process logs the
// session when it ends), and each connection leaves the connection set.
func (h *Handoff) Commit() {
	if h.over {
		return
	}
	h.over = true
	if h.loops != nil {
		h.loops.Release(h.frozen)
	}
	for _, u := range h.records {
		u.lease.Release()
		h.s.conns.ended(u)
	}
	for i, c := range h.conns {
		unix.Close(h.handed[i].FD)
		c.closeSocket() // out of Go's poller, then close(2): the other process holds the socket
		h.s.conns.closed(c)
	}
	if len(h.records)+len(h.conns) > 0 {
		h.s.log.Info().Int("sessions", len(h.records)).Int("conns", len(h.conns)).Msg("hand-over: sessions and connections handed")
	}
}

// Abort takes everything back: the hand-over failed. The sessions go back
// on their loops as they were (bytes that arrived meanwhile are read now),
// the connections back to waiting for their next request (their idle
// timeout starts again).
func (h *Handoff) Abort() {
	if h.over {
		return
	}
	h.over = true
	if h.loops != nil {
		h.loops.Thaw(h.frozen)
	}
	for i, c := range h.conns {
		unix.Close(h.handed[i].FD)
		c.resume()
	}
}

// Adopted is what a server took from the process it replaces: nothing of
// it runs until Start; Drop closes it all instead. One of the two must be
// called, once. Its methods are not safe for concurrent use.
type Adopted struct {
	s       *Server
	loops   *splice.Loops
	frozen  []*splice.Frozen
	records []*spliced // frozen[i]'s record
	conns   []*conn
	over    bool // Start or Drop ran
}

// errNoLoops refuses sessions to a server that does not run splice loops:
// they stay in the process that has them.
var errNoLoops = errors.New("proxy: adopt: sessions need the splice loops (--splice-loops is -1, or not Linux)")

// Adopt takes sessions and idle connections from the process this one
// replaces. It owns every descriptor given from its call on: those it
// cannot use it closes (close(2)), and on an error it has closed them all.
// A session whose node this server does not know (the node left the
// configuration) is closed and logged, not adopted: its client reconnects
// and is routed anew; so is a descriptor that is not a TCP socket. A
// session the splice loops refuse, or any session when this server runs no
// splice loops, fails the whole adoption: the old process then keeps what
// it has. Sessions are counted on their nodes and in the connection set at
// once (Shutdown waits for them); nothing moves a byte until Start.
func (s *Server) Adopt(sessions []HandedSession, conns []HandedConn) (*Adopted, error) {
	a := &Adopted{s: s}
	ls, _ := s.engine.(*splice.Loops)
	if len(sessions) > 0 && ls == nil {
		closeHanded(sessions, conns)
		return nil, errNoLoops
	}
	a.loops = ls
	for i, hs := range sessions {
		m := hs.Meta
		n := s.pool.Node(m.Node)
		if n == nil {
			unix.Close(hs.Client)
			unix.Close(hs.Node)
			s.log.Warn().Str("node", m.Node).Str("remote", m.Remote).Msg("hand-over: session of an unknown node closed")
			continue
		}
		u := &spliced{
			s:      s,
			remote: m.Remote,
			line:   m.Line,
			start:  int64(m.Start.Sub(s.started)), // its access-log dur runs from the request's start in the old process
			status: int32(m.Status),
			why:    route.ParseReason(m.Why),
		}
		u.lease = n.AcquireSession()
		s.conns.adopted()
		f, err := ls.Adopt(hs.Client, hs.Node, m.Splice, n, u)
		if err != nil {
			u.lease.Release()
			s.conns.ended(u)
			a.Drop()
			closeHanded(sessions[i:], conns)
			return nil, fmt.Errorf("adopt session of %s from %s: %w", m.Node, m.Remote, err)
		}
		a.frozen = append(a.frozen, f)
		a.records = append(a.records, u)
	}
	for _, hc := range conns {
		if c := s.adoptConn(hc); c != nil {
			a.conns = append(a.conns, c)
		}
	}
	return a, nil
}

// adoptConn makes a conn of a handed idle connection and opens it in the
// connection set; its goroutine starts at Start. A descriptor that is not a
// TCP socket is closed and logged (nil).
func (s *Server) adoptConn(hc HandedConn) *conn {
	f := os.NewFile(uintptr(hc.FD), "handed-conn")
	if f == nil {
		return nil
	}
	nc, err := net.FileConn(f) // a duplicate in Go's poller
	f.Close()
	if err != nil {
		s.log.Warn().Err(err).Str("remote", hc.Meta.Remote).Msg("hand-over: connection not adopted")
		return nil
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		s.log.Warn().Str("remote", hc.Meta.Remote).Msg("hand-over: connection not adopted: not a TCP socket")
		return nil
	}
	c := &conn{s: s, nc: tc, remoteIP: hc.Meta.Remote, served: int32(min(hc.Meta.Served, math.MaxInt32)), born: hc.Meta.Born.UnixNano(), raw: sockio.RawConnOf(tc)}
	s.conns.opened(c)
	return c
}

// closeHanded closes the descriptors of handed sessions and connections.
func closeHanded(sessions []HandedSession, conns []HandedConn) {
	for _, hs := range sessions {
		unix.Close(hs.Client)
		unix.Close(hs.Node)
	}
	for _, hc := range conns {
		unix.Close(hc.FD)
	}
}

// Start runs what was adopted: the sessions start on the splice loops
// (registered with their nodes now), the connections wait for their next
// request (one that arrived during the hand-over is read at once; the idle
// timeout starts again from now).
func (a *Adopted) Start() {
	if a.over {
		return
	}
	a.over = true
	if len(a.frozen) > 0 {
		a.loops.Thaw(a.frozen)
	}
	for _, c := range a.conns {
		go c.await()
	}
	if len(a.frozen)+len(a.conns) > 0 {
		a.s.log.Info().Int("sessions", len(a.frozen)).Int("conns", len(a.conns)).Msg("hand-over: sessions and connections adopted")
	}
}

// Drop closes everything adopted (close(2) only: the old process may still
// serve it) and gives back its counts, with no access-log line.
func (a *Adopted) Drop() {
	if a.over {
		return
	}
	a.over = true
	if len(a.frozen) > 0 {
		a.loops.Release(a.frozen)
	}
	for _, u := range a.records {
		u.lease.Release()
		a.s.conns.ended(u)
	}
	for _, c := range a.conns {
		c.nc.Close()
		a.s.conns.closed(c)
	}
}

// Counts returns how many sessions and connections were adopted.
func (a *Adopted) Counts() (sessions, conns int) { return len(a.records), len(a.conns) }

// Retire runs this server after a committed hand-over until nothing is
// left of it: it accepts nothing (StopAccepting was called), closes
// keep-alive connections between requests (an answer under way says
// Connection: close, as during Shutdown), and lets requests in flight and
// the sessions it kept (TLS ones, those on goroutines, those being evicted)
// run until they end. When ctx is done first it shuts down as Shutdown
// does, given drainTimeout (<= 0: at once): WebSockets are told 1001 over
// its first half, and what is left at its end is closed. It returns nil
// when everything ended by itself or within drainTimeout, and
// context.DeadlineExceeded when drainTimeout closed what was left.
func (s *Server) Retire(ctx context.Context, drainTimeout time.Duration) error {
	s.StopAccepting() // already done by the hand-over; an accept loop left would hold the wait below
	s.mu.Lock()
	s.draining.Store(true) // answers say Connection: close; idle connections close
	s.mu.Unlock()
	s.conns.wakeIdle()
	done := make(chan struct{})
	go s.waitConns(done)
	select {
	case <-done:
		return s.Shutdown(context.Background()) // nothing is left to wait for: it closes the rest (pool, loops, admin)
	case <-ctx.Done():
	}
	s.log.Info().Int64("conns", s.conns.open.Load()).Dur("drain_timeout", drainTimeout).Msg("retiring: time is up; shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), max(drainTimeout, 0))
	defer cancel()
	return s.Shutdown(sctx)
}
