package proxy

import (
	"sync/atomic"
	"time"
)

// Plain keep-alive client connections between requests, on epoll loops
// (--http-loops): the platform-neutral half. httploop_linux.go has the
// loops; off Linux there are none and every connection keeps its goroutine.
//
// A connection on the loops is owned by one side at a time, as its state
// says. The loop owns an idle one (lcIdle): its descriptor sits in the
// loop's epoll, edge-triggered, and nothing else of it runs: no goroutine,
// no buffer, no deadline. When epoll reports it readable the loop makes it
// lcBusy and starts loopServe, which reads the request where the kernel put
// it (the read finds bytes: readiness decided when to read), forwards it,
// relays the answer and hands the connection back (park). Readiness that
// comes while it is served (a pipelined request, a hang-up) turns lcBusy
// into lcReady, and park then serves again instead of parking: an
// edge-triggered event is reported once.
//
// A connection idles cold: at its first park after a request the serving
// goroutine lets go of its net.Conn (netFD, addresses, Go's poll
// descriptor, the finalizer) and keeps a duplicate of its descriptor,
// which is what sits in the loop's epoll. A cold connection's requests are
// served on that descriptor as it is (coldConn), as long as no read or
// write on the client's socket has to wait: a head that came whole, an
// answer that fits the socket's buffer. One that has to wait (a head in
// pieces, a slow reader, a long poll whose client is watched, an upgrade)
// makes it warm first: out of the epoll, a net.Conn again (net.FileConn),
// and on its loop anew when it parks; it then stays warm, as busy
// connections do, until the sweep finds it idle for coldAfter and cools it
// again. An idle connection holds a conn and a descriptor.

// Ownership states of a connection on the loops.
const (
	lcBusy  int32 = iota // a goroutine serves it (the zero value: not on a loop yet)
	lcReady              // busy, and the loop saw it readable meanwhile
	lcIdle               // the loop holds it, waiting for readiness
	lcGone               // the loop closed it (idle timeout, shutdown)
)

// loopConn is a connection's place on the loops. state moves as described
// above; since is when it last went idle (unix nanos), read by the loop's
// sweep only while it holds the connection idle. cold and fd change only
// under the connection set's mu, by whoever owns the connection (busy).
type loopConn struct {
	l     *httpLoop // nil until its first park (and after a warm-up); set by the serving goroutine
	slot  int32     // index in l.conns
	gen   uint32    // l's generation when added: events of a slot's former conn are ignored
	state atomic.Int32
	fd    int32 // the socket's descriptor while cold
	off   bool  // the loop refused it: the connection keeps a goroutine
	cold  bool  // nc let go: the socket is fd alone
	woke  bool  // warmed up once, or could not be cooled: it parks warm (the sweep cools it)
	since atomic.Int64
}

// coldAfter is how long a warm connection stays idle on its loop before
// the sweep cools it. A warm-up and the cooling after it cost about twenty
// system calls (net.FileConn's, the epoll moves, the duplicate), four
// times a request's own: a connection that had to wait once (long polls
// do, each time) and goes on sending requests every few seconds stays
// warm instead of paying that each time. A variable for tests.
var coldAfter = 15 * time.Second

// onLoops reports whether c is served between requests by the loops: a
// plain TCP connection while loops run.
func (c *conn) onLoops() bool {
	return c.s.http != nil && (c.raw != nil || c.lc.cold) && !c.lc.off
}

// loopServe serves c from its loop's readiness: on the worker its loop
// handed it to when c became readable, or on the accept's goroutine for its
// first request.
// A burst of requests reads only what is there (the first read never
// waits); the connection then goes back to its loop, or closes. Upgrades
// leave the loop for the splice engine.
func (c *conn) loopServe() {
	s := c.s
	for {
		x := s.exchanges.Get().(*exchange)
		keep := x.serveBurst(c, false)
		full := x.cr.Full()
		up, sess := x.pending, x.session
		x.pending, x.session = nil, nil
		x.release()
		s.exchanges.Put(x)
		switch {
		case up != nil:
			s.http.remove(c)
			c.startSession(up, sess)
			return
		case !keep:
			if c.linger && c.lc.cold && s.http.warmUp(c) != nil {
				c.linger = false // no socket left to linger on
			}
			c.close()
			return
		case s.isClosing() && !c.firstRequestDue():
			c.close()
			return
		}
		if s.http.park(c, full) {
			return
		}
	}
}

// firstRequestDue reports a connection accepted just before Shutdown began
// whose first request may still be on its way: it is waited for until a
// moment after the accept (firstRequestGrace), as run does.
func (c *conn) firstRequestDue() bool {
	return c.served == 0 && time.Now().Before(c.bornAt().Add(firstRequestGrace))
}
