package proxy

import (
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tether-lb/tether/proxy/internal/keepalive"
	"github.com/tether-lb/tether/proxy/internal/sockio"
)

// Plain keep-alive client connections between requests, on the epoll
// loops of package keepalive (--http-loops): what a connection is to them
// (conn implements keepalive.Conn) and how it is served from them. Off
// Linux there are no loops and every connection keeps its goroutine.
//
// A connection idles cold: at its first park after a request the serving
// goroutine lets go of its net.Conn (netFD, addresses, Go's poll
// descriptor, the finalizer) and keeps a duplicate of its descriptor,
// which is what sits in the loop's epoll. A cold connection's requests are
// served on that descriptor as it is (sockio.ColdConn), as long as no read
// or write on the client's socket has to wait: a head that came whole, an
// answer that fits the socket's buffer. One that has to wait (a head in
// pieces, a slow reader, a long poll whose client is watched, an upgrade)
// makes it warm first: out of the epoll, a net.Conn again (net.FileConn),
// and on its loop anew when it parks; it then stays warm, as busy
// connections do, until the sweep finds it idle for coldAfter and cools it
// again. An idle connection holds a conn and a descriptor.

// loopConn is a connection's place on the loops and its coldness. cold and
// fd change only under the connection set's mu, by whoever owns the
// connection (busy).
type loopConn struct {
	place keepalive.Place
	fd    int32 // the socket's descriptor while cold
	off   bool  // the loop refused it: the connection keeps a goroutine
	cold  bool  // nc let go: the socket is fd alone
	woke  bool  // warmed up once, or could not be cooled: it parks warm (the sweep cools it)
}

// coldAfter is how long a warm connection stays idle on its loop before
// the sweep cools it. A warm-up and the cooling after it cost about twenty
// system calls (net.FileConn's, the epoll moves, the duplicate), four
// times a request's own: a connection that had to wait once (long polls
// do, each time) and goes on sending requests every few seconds stays
// warm instead of paying that each time. A variable for tests.
var coldAfter = 15 * time.Second

// newHTTPLoops starts n loops (<= 0: one per CPU) for s.
func newHTTPLoops(s *Server, n int) (*keepalive.Loops, error) {
	return keepalive.New(keepalive.Options{Loops: n, Tick: s.sweepTick, Log: &s.log})
}

// sweepTick is how often a loop sweeps its idle connections: a quarter of
// the shortest timeout; while draining, often enough for a first request's
// grace.
func (s *Server) sweepTick(draining bool) time.Duration {
	if draining {
		return firstRequestGrace / 10
	}
	cfg := s.cfg()
	return min(cfg.IdleTimeout, cfg.HeaderTimeout) / 4
}

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
			s.http.Remove(c)
			c.startSession(up, sess)
			return
		case !keep:
			if c.linger && c.lc.cold && c.warmUp() != nil {
				c.linger = false // no socket left to linger on
			}
			c.close()
			return
		case s.isClosing() && !c.firstRequestDue():
			c.close()
			return
		}
		// A last read that filled its buffer may have left more in the
		// socket than epoll will report again: served at once.
		if !full && s.http.Park(c, !c.lc.woke && !c.lc.cold && c.served > 0) {
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

// Place, Serve, Close and the rest make conn a keepalive.Conn. A
// connection idles cold from its first park after a request (loopServe
// asks the loop to cool it); one that parked before its first request did
// so warm.

func (c *conn) Place() *keepalive.Place { return &c.lc.place }

func (c *conn) Serve() { c.loopServe() }

func (c *conn) Close() { c.close() }

// Socket is c's socket: the bare descriptor while cold, its net.Conn's
// RawConn while warm.
func (c *conn) Socket() (int, syscall.RawConn) {
	if c.lc.cold {
		return int(c.lc.fd), nil
	}
	return -1, c.raw
}

func (c *conn) Lost(err error) {
	c.s.errLog.Warn().Err(err).Str("remote", c.remoteIP).Msg("http loop: idle connection closed")
	c.close()
}

func (c *conn) Refused(err error) {
	c.s.errLog.Warn().Err(err).Str("remote", c.remoteIP).Msg("http loop: connection not taken; it keeps a goroutine")
	if c.lc.cold && !c.warm() {
		return
	}
	c.lc.off = true
	c.run(false)
}

// Sweep: past the idle timeout (the header timeout before a first
// request) it is closed; warm and idle past coldAfter it is cooled. While
// draining it may be closed once it has served a request or its first
// request's grace has passed.
func (c *conn) Sweep(now, since int64, draining bool) (expired, cool bool) {
	if draining {
		return c.served > 0 || now >= c.born+int64(firstRequestGrace), false
	}
	limit := c.s.cfg().IdleTimeout
	if c.served == 0 {
		limit = c.s.cfg().HeaderTimeout
	}
	return now-since > int64(limit), !c.lc.cold && now-since > int64(coldAfter)
}

// ReadableNow reports whether c, idle on its loop, has bytes or a hang-up
// waiting, warm or cold.
func (c *conn) ReadableNow() bool {
	if c.lc.cold {
		return sockio.ReadableFD(int(c.lc.fd))
	}
	return sockio.ReadableNow(c.nc)
}

// Cool lets go of the net.Conn of c, busy and out of any epoll, and keeps
// a duplicate of its descriptor instead: what an idle connection then
// holds is its conn and its socket. A connection that cannot be cooled
// (no descriptor left for the duplicate) stays warm.
func (c *conn) Cool() {
	tc, ok := c.nc.(*net.TCPConn)
	if !ok {
		return
	}
	fd, err := sockio.DupFD(tc)
	if err != nil {
		c.s.errLog.Debug().Err(err).Str("remote", c.remoteIP).Msg("http loop: connection kept warm")
		c.lc.woke = true // it parks warm: not tried at each request
		return
	}
	c.s.conns.setCold(c, fd)
	tc.Close() // out of Go's poller, then close(2): fd keeps the socket
}

// warm gives c, busy and cold, its net.Conn back before it is served
// with a goroutine of its own (Refused). It reports false when the client
// hung up or that failed; c is then closed and accounted for.
func (c *conn) warm() bool {
	if sockio.HungUp(int(c.lc.fd)) {
		// The client closed its idle connection (or reset it): there is
		// nothing to read, and no net.Conn is made to find that out.
		c.close()
		return false
	}
	if err := c.warmUp(); err != nil {
		c.s.errLog.Warn().Err(err).Str("remote", c.remoteIP).Msg("http loop: idle connection lost")
		c.close()
		return false
	}
	return true
}

// warmUp makes c, busy and cold, a net.Conn again (net.FileConn, a
// duplicate in Go's poller): c leaves its loop's epoll, where its next park
// puts it anew. On error c has no socket left (its descriptor is closed);
// the caller ends it.
func (c *conn) warmUp() error {
	c.s.http.Remove(c)
	if h := testHookWarm.Load(); h != nil {
		(*h)()
	}
	f := os.NewFile(uintptr(c.lc.fd), "")
	nc, err := net.FileConn(f)
	f.Close()
	c.s.conns.setWarm(c, nc)
	return err
}

// WarmUp makes c a net.Conn for its exchange's sockio.ColdConn, whose read
// or write must wait. c may be warm already (warmClient).
func (c *conn) WarmUp() (net.Conn, syscall.RawConn, error) {
	if c.lc.cold {
		if err := c.warmUp(); err != nil {
			// Its socket is gone with the descriptor: the exchange ends,
			// and so does the connection.
			c.s.errLog.Warn().Err(err).Str("remote", c.remoteIP).Msg("http loop: connection lost as it was made a net.Conn")
			return nil, nil, err
		}
	}
	return c.nc, c.raw, nil
}

// testHookWarm, set by tests only, runs when a cold connection is made a
// net.Conn again.
var testHookWarm atomic.Pointer[func()]
