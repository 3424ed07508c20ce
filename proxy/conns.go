package proxy

import (
	"net"
	"sync"
	"sync/atomic"
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
	mu     sync.Mutex         // guards active, and conn.nc of the conns in it
	active map[*conn]struct{} // connections whose conn the server's goroutines hold
	open   atomic.Int64       // open client connections, spliced sessions included
	wg     sync.WaitGroup     // one per open connection or session, one per accept loop
}

func newConnSet() connSet { return connSet{active: make(map[*conn]struct{})} }

// opened accounts for an accepted connection.
func (cs *connSet) opened(c *conn) {
	cs.mu.Lock()
	cs.active[c] = struct{}{}
	cs.mu.Unlock()
	cs.open.Add(1)
	cs.wg.Add(1)
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
	delete(cs.active, c)
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
		delete(cs.active, u.conn)
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

// wakeIdle ends the wait of every idle connection (Shutdown).
func (cs *connSet) wakeIdle() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for c := range cs.active {
		c.wakeIfIdle()
	}
}

// closeAll closes every connection's socket (Shutdown past its time); the
// goroutines that hold them then end and account for them.
func (cs *connSet) closeAll() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for c := range cs.active {
		c.nc.Close()
	}
}
