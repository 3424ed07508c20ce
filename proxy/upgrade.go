package proxy

import (
	"bufio"
	"time"

	"github.com/tether-lb/tether/pool"
)

// upgraded is a WebSocket session waiting to be spliced: everything the
// splice and its access-log line need once the exchange has gone back to its
// pool, so a live session holds no header, reader or writer.
type upgraded struct {
	sess   *Session // handed to the splicer, then dropped: it keeps what it needs
	node   *pool.Node
	why    reason
	start  time.Time
	method string
	path   string
	status int
}

// upgrade finishes the handshake of an upgrade: the node's 101 head goes to
// the client (its Connection and Upgrade headers are the handshake itself),
// and the bytes already read past either head are copied out of the
// borrowed readers. The splice runs after the exchange is released
// (conn.serve calls runSession). It reports false: the client connection is
// done when the session is.
func (x *exchange) upgrade(pc *pool.Conn, nbr *bufio.Reader, status int) bool {
	s := x.s
	x.upgraded = true
	x.head = appendResponseHead(x.head[:0], x.resp)
	x.bw.Write(x.head)
	if err := x.bw.Flush(); err != nil {
		pc.Close()
		s.record(x, status, err)
		return false
	}
	path := x.req.RequestURI()
	if len(path) > maxLoggedPath {
		path = path[:maxLoggedPath]
	}
	x.pending = &upgraded{
		sess: &Session{
			Client:       x.c.c,
			Node:         pc.Conn,
			ClientBuf:    takeBuffered(x.br),
			NodeBuf:      takeBuffered(nbr),
			IdleTimeout:  s.cfg().WSIdleTimeout,
			WriteTimeout: s.cfg().WriteTimeout,
			WebSocket:    true,
			Registry:     x.node,
		},
		node:   x.node,
		why:    x.why,
		start:  x.start,
		method: string(x.req.Method()),
		path:   string(path),
		status: status,
	}
	// The connection leaves the pool's in-flight set: the session registers
	// with its node instead, to be told when the node goes down. It is
	// counted from now, so the balancer sees it at once.
	pc.Detach()
	x.node.Sessions.Add(1)
	x.node.Active.Add(1)
	return false
}

// startSession hands an upgraded connection to the splicer, which copies it
// on goroutines of its own; this connection's goroutine then ends, so its
// stack (grown while it read and forwarded heads) is freed and an idle
// session costs only its copiers' minimal stacks. endSession runs when the
// session is over.
func (c *conn) startSession(u *upgraded) {
	c.s.wg.Add(1)
	c.session = u
	c.c.SetDeadline(time.Time{})
	u.sess.Node.SetDeadline(time.Time{})
	sess := u.sess
	u.sess = nil // a session on a loop no longer needs the Go conns it held
	c.s.splicer.Start(sess, c.endSession)
	if sess.Detached {
		// The loop took the descriptors and closed the Go conn: keep
		// nothing of it. Shutdown closes loop sessions through the loops.
		c.s.mu.Lock()
		c.c = nil
		c.s.mu.Unlock()
	}
}

// endSession writes a session's access-log line and closes the client
// connection's accounting. It runs on one of the session's goroutines.
func (c *conn) endSession(toNode, toClient int64, err error) {
	s, u := c.s, c.session
	defer s.wg.Done()
	defer c.untrack() // the splicer closed both sockets
	u.node.Active.Add(-1)
	u.node.Sessions.Add(-1)
	u.node.Served.Add(1)
	u.node.Stats.CountStatus(u.status)
	u.node.Stats.BytesIn.Add(uint64(toNode))
	u.node.Stats.BytesOut.Add(uint64(toClient))
	if !s.cfg().AccessLog {
		return
	}
	e := s.access.Info()
	if !e.Enabled() {
		return
	}
	e = e.Bytes("remote", c.remoteIP).
		Str("method", u.method).
		Str("path", u.path).
		Int("status", u.status).
		Int64("bytes_in", toNode).
		Int64("bytes_out", toClient).
		Dur("dur", time.Since(u.start)).
		Str("node", u.node.Name).
		Str("addr", u.node.Addr).
		Str("why", u.why.String()).
		Bool("ws", true)
	if err != nil {
		e = e.Err(err)
	}
	e.Send()
}

// takeBuffered copies out the bytes br holds beyond what was parsed (a
// client's first frames sent right behind its upgrade request, a node's
// first frames right behind its 101), or nil.
func takeBuffered(br *bufio.Reader) []byte {
	if br == nil || br.Buffered() == 0 {
		return nil
	}
	b, _ := br.Peek(br.Buffered())
	return append([]byte(nil), b...)
}
