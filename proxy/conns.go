package proxy

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/tether-lb/tether/proxy/internal/sockio"
)

// connSet is the one account of client connections and their sessions.
// A connection is opened once (accept, or Adopt for one handed over by
// another process) and ends once: when tether closes
// its socket (closed), or, after a 101, when its spliced session ends
// (ended). Between the two it is counted in open and holds one count of wg,
// which Shutdown waits on; while the server's goroutines hold its conn it is
// in active, where Shutdown finds it to wake or close it. A session whose
// descriptors a splice loop took leaves active at once (detach): the loops
// end it, and nothing but its spliced record is left of the connection.
//
// The accept loops hold a count of wg too, from serve to their return, so
// Shutdown's wait also covers a connection accepted while it began.
type connSet struct {
	mu sync.Mutex // guards active, and conn.nc and conn.idx of the conns in it
	// active are the connections whose conn the server's goroutines hold, in
	// no order; conn.idx is each one's index. A slice of them costs an idle
	// connection a pointer, where a map's entry costs several.
	active []*conn
	open   atomic.Int64   // open client connections, spliced sessions included
	wg     sync.WaitGroup // one per open connection or session, one per accept loop
}

func newConnSet() connSet { return connSet{} }

// opened accounts for an accepted connection.
func (cs *connSet) opened(c *conn) {
	cs.mu.Lock()
	c.idx = int32(len(cs.active))
	cs.active = append(cs.active, c)
	cs.mu.Unlock()
	cs.open.Add(1)
	cs.wg.Add(1)
}

// leave takes c out of active, once; the last connection takes its index.
// Under mu.
func (cs *connSet) leave(c *conn) {
	i := c.idx
	if i < 0 {
		return
	}
	last := len(cs.active) - 1
	cs.active[i] = cs.active[last]
	cs.active[i].idx = i
	cs.active[last] = nil
	cs.active = cs.active[:last]
	c.idx = -1
}

// adopted accounts for a session taken from another process: counted in
// open and wg until ended, never in active (a loop owns its descriptors).
func (cs *connSet) adopted() {
	cs.open.Add(1)
	cs.wg.Add(1)
}

// closed accounts for a connection whose socket tether closed. Once per
// connection, and never for one that became a session.
func (cs *connSet) closed(c *conn) {
	cs.mu.Lock()
	cs.leave(c)
	cs.mu.Unlock()
	cs.open.Add(-1)
	cs.wg.Done()
}

// detach takes a session's client connection out of active, once (the
// loop may end the session before Start returns): the session keeps its
// count in open and wg until ended.
func (cs *connSet) detach(u *spliced) {
	cs.mu.Lock()
	if u.conn != nil {
		cs.leave(u.conn)
		u.conn = nil
	}
	cs.mu.Unlock()
}

// ended accounts for a spliced session that is over: both sockets closed.
// Once per session.
func (cs *connSet) ended(u *spliced) {
	cs.detach(u)
	cs.open.Add(-1)
	cs.wg.Done()
}

// setConn replaces c's conn (the TLS connection after its handshake) under
// mu, as Shutdown reads it.
func (cs *connSet) setConn(c *conn, nc net.Conn) {
	cs.mu.Lock()
	c.nc = nc
	cs.mu.Unlock()
}

// setCold makes c, busy on the http loops, cold: its socket is fd alone.
// Under mu, as Shutdown and HandOff read c.nc.
func (cs *connSet) setCold(c *conn, fd int) {
	cs.mu.Lock()
	c.nc, c.raw = nil, nil
	c.lc.cold, c.lc.fd = true, int32(fd)
	cs.mu.Unlock()
}

// setWarm makes c, busy and cold, warm again with nc (nil if it could not
// be made: its socket is closed).
func (cs *connSet) setWarm(c *conn, nc net.Conn) {
	cs.mu.Lock()
	c.nc, c.raw = nc, nil
	if nc != nil {
		c.raw = sockio.RawConnOf(nc)
	}
	c.lc.cold, c.lc.fd, c.lc.woke = false, -1, true
	cs.mu.Unlock()
}

// wakeIdle ends the wait of every idle connection (Shutdown).
func (cs *connSet) wakeIdle() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, c := range cs.active {
		c.wakeIfIdle()
	}
}

// closeAll closes every connection's socket (Shutdown past its time); the
// goroutines that hold them then end and account for them.
func (cs *connSet) closeAll() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, c := range cs.active {
		if c.nc != nil { // a cold one is closed by its loop (keepalive.Loops.Close)
			c.nc.Close()
		}
	}
}
