package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/route"
	"github.com/tether-lb/tether/proxy/internal/splice"
	"github.com/tether-lb/tether/proxy/internal/wire"
)

// spliced is a spliced WebSocket session as tether keeps it: what its
// access-log line and its node's counters need once the exchange has gone
// back to its pool, so a live session holds no header, reader or writer. It
// is the session's Ender: the engine holds it, no closure. With the session
// on a splice loop it is all that is left of the client connection: 72 bytes
// on amd64 (an 80-byte allocation), plus the logged request line.
type spliced struct {
	s      *Server
	conn   *conn             // the client connection while the server tracks it; nil once a loop owns the descriptors
	lease  pool.SessionLease // its node's counts, released once when the session ends; holds the node
	remote string            // the client's IP, as logged (the conn's)
	line   string            // method, a space and the request target (cut to maxLoggedPath)
	start  int64             // monotonic nanoseconds since the server started
	status int32
	why    route.Reason
	tls    bool // over TLS: counted in Server.tlsSessions while it runs
}

var strWSKey = []byte("Sec-WebSocket-Key")

// errNoUpgrade is a 101 to a request that was not a WebSocket handshake.
var errNoUpgrade = fmt.Errorf("%w: 101 to a request that asked for no upgrade", wire.ErrBadResponse)

// checkSwitch checks the node's 101 to a WebSocket handshake as a client
// would (RFC 6455 section 4.2.2): Upgrade names websocket, and exactly one
// Sec-WebSocket-Accept carries the value x.accept computed from the
// client's key. A node that answers 101 to anything (or a stale or foreign
// answer) fails with wire.ErrBadResponse: 502, and neither connection becomes a
// tunnel.
func (x *exchange) checkSwitch() error {
	if !x.ans.UpgradeWebSocket() {
		return fmt.Errorf("%w: 101 without Upgrade: websocket", wire.ErrBadResponse)
	}
	if got, one := x.ans.WebSocketAccept(); !one || !bytes.Equal(got, x.accept[:]) {
		return fmt.Errorf("%w: %w", wire.ErrBadResponse, errWrongAccept)
	}
	return nil
}

// errWrongAccept: the node's 101 does not answer the client's key.
var errWrongAccept = errors.New("101 without the Sec-WebSocket-Accept of the client's key")

// upgrade finishes the handshake of an upgrade: the node's 101 head goes to
// the client (its Connection and Upgrade headers are the handshake itself),
// and the bytes already read past either head are copied out of the
// borrowed readers. The splice runs after the exchange is released
// (conn.run calls startSession); the client connection is done when the
// session is.
func (x *exchange) upgrade(pc *pool.Conn, nbr *bufio.Reader, status int) {
	s := x.s
	x.upgraded = true
	x.head = x.ans.Relay(x.head[:0], nbr, wire.ConnNone)
	x.bw.Write(x.head)
	if err := x.bw.Flush(); err != nil {
		pc.Close()
		s.record(x, status, err)
		return
	}
	path := x.req.RequestURI()
	if len(path) > maxLoggedPath {
		path = path[:maxLoggedPath]
	}
	x.head = append(append(append(x.head[:0], x.req.Method()...), ' '), path...) // the 101's head is out
	x.session = &splice.Session{
		Client:       x.conn.nc,
		Node:         pc.Conn,
		ClientBuf:    takeBuffered(x.br),
		NodeBuf:      takeBuffered(nbr),
		IdleTimeout:  s.cfg().WSIdleTimeout,
		WriteTimeout: s.cfg().WriteTimeout,
		WebSocket:    true,
		Registry:     x.node,
	}
	x.pending = &spliced{
		s:      s,
		conn:   x.conn,
		remote: x.conn.remoteIP,
		line:   string(x.head),
		start:  int64(x.start.Sub(s.started)),
		status: int32(status),
		why:    x.why,
	}
	// The connection leaves the pool's in-flight set: the session registers
	// with its node instead, to be told when the node goes down. It is
	// counted from now, so the balancer sees it at once.
	pc.Detach()
	x.pending.lease = x.node.AcquireSession()
}

// startSession hands an upgraded connection to the splice engine. This
// connection's goroutine then ends, so its stack (grown while it read and
// forwarded heads) is freed. A session on a splice loop also leaves the
// server's connection set (the loop closed the Go conns; Shutdown ends loop
// sessions through the loops), so nothing but u and the loop's record is
// left of it. SessionEnded runs when the session is over.
func (c *conn) startSession(u *spliced, sess *splice.Session) {
	c.nc.SetDeadline(time.Time{})
	sess.Node.SetDeadline(time.Time{})
	if c.secure {
		u.tls = true
		c.s.tlsSessions.Add(1)
	}
	c.s.engine.Start(sess, u)
	if sess.Detached {
		c.s.conns.detach(u)
	}
}

// SessionEnded implements Ender: the session's counters and its access-log
// line. It runs on the session's goroutine or loop: it must not block.
func (u *spliced) SessionEnded(toNode, toClient int64, err error) {
	s := u.s
	defer s.conns.ended(u) // the engine closed both sockets
	if u.tls {
		s.tlsSessions.Add(-1)
	}
	n := u.lease.Node()
	u.lease.Release()
	n.Served.Add(1)
	n.Stats.CountStatus(int(u.status))
	n.Stats.BytesIn.Add(uint64(toNode))
	n.Stats.BytesOut.Add(uint64(toClient))
	if !s.cfg().AccessLog {
		return
	}
	e := s.access.Info()
	if !e.Enabled() {
		return
	}
	method, path, _ := strings.Cut(u.line, " ")
	e = e.Str("remote", u.remote).
		Str("method", method).
		Str("path", path).
		Int("status", int(u.status)).
		Int64("bytes_in", toNode).
		Int64("bytes_out", toClient).
		Dur("dur", time.Since(s.started)-time.Duration(u.start)).
		Str("node", n.Name).
		Str("addr", n.Addr).
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
