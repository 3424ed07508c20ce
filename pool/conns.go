package pool

import (
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tether-lb/tether/internal/sockpoll"
)

// Conn is a connection to one node, lent by Get and given back with Put or
// closed by the borrower.
type Conn struct {
	net.Conn
	Node *Node
	// Reused is true when the connection came from the idle pool: a failure
	// before any answer byte may be the node closing an idle connection, and
	// the request may be retried on a fresh one if nothing of it was lost.
	Reused bool

	// Raw is the socket's RawConn for a plain TCP connection (nil for TLS
	// ones), got once at dial: callers read and write through it without
	// allocating one per use.
	Raw syscall.RawConn

	// ReadDeadline is the borrowers' own: the read deadline the last one
	// set on the connection (unix nanoseconds), for the next to keep if it
	// may; 0 (a new connection): unknown. Get and Put leave it.
	ReadDeadline int64

	idleAt  int64       // unix nanos when it was put back
	fd      int         // the socket, for the liveness check; -1 for TLS connections
	evicted atomic.Bool // closed by its node's eviction (see Evicted)
}

// probeAfter is how long a pooled connection may sit idle before Get checks
// that the node has not closed it.
const probeAfter = 250 * time.Millisecond

// Get lends a connection to n: the warmest idle one that is still open, or a
// new one dialed under the connect timeout (always a new one when fresh is
// set: a retry after a pooled connection failed). A failed dial marks the node
// failing (passive health) and returns an error naming the node. A node that
// is down, or gone after its removal, lends nothing and is not dialled: the
// error is ErrNodeDown. A pooled connection may still carry the deadlines
// its last borrower set (Put leaves them): set yours before the first read
// or write.
func (n *Node) Get(fresh bool) (*Conn, error) {
	if n.unusable() {
		return nil, n.downError()
	}
	now := time.Now().UnixNano()
	deadline := now - int64(n.pool.cfg().IdleTimeout)
	for !fresh {
		c := n.popIdle()
		if c == nil {
			break
		}
		// A connection idle for a moment is taken as is (a request without
		// a body that finds it closed is retried); one idle longer is
		// checked first, as the node may have timed it out.
		if c.idleAt < deadline || (now-c.idleAt > int64(probeAfter) && !c.open()) {
			c.Conn.Close() // never lent
			continue
		}
		if !n.lend(c) {
			c.Conn.Close()
			return nil, n.downError()
		}
		c.Reused = true
		n.Reuses.Add(1)
		return c, nil
	}
	c, err := n.dialConn()
	if err != nil {
		return nil, err
	}
	n.Dials.Add(1)
	if !n.lend(c) { // went down during the dial
		c.Conn.Close()
		return nil, n.downError()
	}
	return c, nil
}

// downError is Get's error on a node that is down or gone.
func (n *Node) downError() error {
	return fmt.Errorf("node %s: %w", n.Name, ErrNodeDown)
}

// Put gives c back to its node's idle pool, or closes it when the pool is
// full, the node is down or gone, or the pool is closed. The caller must
// have read the whole answer and sent nothing more. The deadlines its last
// borrower set stay on it (clearing them would cost a poller update per
// request): a borrower sets its own before it reads or writes.
func (c *Conn) Put() {
	n := c.Node
	n.unlend(c)
	if n.pool.cfg().MaxIdle < 0 || c.evicted.Load() {
		c.Conn.Close()
		return
	}
	c.idleAt = time.Now().UnixNano()
	n.mu.Lock()
	// Checked under mu: a node going down (or gone) changes its facts, then
	// empties idle under mu, so either it sees c or c sees the change.
	if n.unusable() || len(n.idle) >= n.pool.cfg().MaxIdle || n.pool.ctx.Err() != nil {
		n.mu.Unlock()
		c.Conn.Close()
		return
	}
	n.idle = append(n.idle, c)
	n.mu.Unlock()
}

// IdleConns returns the number of idle pooled connections to n.
func (n *Node) IdleConns() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.idle)
}

func (n *Node) popIdle() *Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := len(n.idle)
	if k == 0 {
		return nil
	}
	c := n.idle[k-1]
	n.idle[k-1] = nil
	n.idle = n.idle[:k-1]
	return c
}

// closeIdle closes every idle connection of n (node down, pool closed).
func (n *Node) closeIdle() {
	n.mu.Lock()
	idle := n.idle
	n.idle = nil
	n.mu.Unlock()
	for _, c := range idle {
		c.Conn.Close()
	}
}

// sweepIdle closes idle connections older than the idle timeout.
func (n *Node) sweepIdle(now time.Time) {
	deadline := now.UnixNano() - int64(n.pool.cfg().IdleTimeout)
	var stale []*Conn
	n.mu.Lock()
	keep := n.idle[:0]
	for _, c := range n.idle {
		if c.idleAt < deadline {
			stale = append(stale, c)
		} else {
			keep = append(keep, c)
		}
	}
	clear(n.idle[len(keep):])
	n.idle = keep
	n.mu.Unlock()
	for _, c := range stale {
		c.Conn.Close()
	}
}

// sweepLoop closes stale idle connections until the pool is closed.
func (p *Pool) sweepLoop() {
	every := max(p.cfg().IdleTimeout/2, time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case now := <-t.C:
			for _, n := range p.Table().Nodes() {
				n.sweepIdle(now)
			}
		}
	}
}

// open reports whether an idle connection is still usable: nothing to read
// (a node sends nothing unasked, so readable means closed, reset or broken).
// A zero-timeout poll (sockpoll.Readable): it neither blocks, consumes nor
// allocates. Only called on idle connections the pool owns, so fd is still
// theirs.
func (c *Conn) open() bool {
	if c.fd < 0 {
		return true
	}
	readable, err := sockpoll.Readable(c.fd)
	return err == nil && !readable
}

// socketFD returns the descriptor under a plain TCP connection and its
// RawConn, or -1 and nil.
func socketFD(nc net.Conn) (int, syscall.RawConn) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, nil
	}
	fd := -1
	raw.Control(func(f uintptr) { fd = int(f) })
	return fd, raw
}
