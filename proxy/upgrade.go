package proxy

import (
	"bufio"
	"time"

	"github.com/tether-lb/tether/pool"
)

// splice finishes an upgrade: the node's 101 head goes to the client, the
// buffers the exchange borrowed go back (bytes already read past either head
// are copied out first) and the two sockets are spliced until the session
// ends. It reports false: the client connection is done when the session is.
func (x *exchange) splice(pc *pool.Conn, nbr *bufio.Reader, status int) bool {
	s := x.s
	x.upgraded = true
	x.head = appendResponseHead(x.head[:0], x.resp)
	x.bw.Write(x.head)
	if err := x.bw.Flush(); err != nil {
		pc.Close()
		s.logRequest(x, status, err)
		return false
	}
	sess := &Session{
		Client:       x.c.c,
		Node:         pc.Conn,
		ClientBuf:    takeBuffered(x.br),
		NodeBuf:      takeBuffered(nbr),
		IdleTimeout:  s.cfg.WSIdleTimeout,
		WriteTimeout: s.cfg.WriteTimeout,
	}
	// The node's Connection and Upgrade headers stay: they are the handshake.
	// The session holds no header, reader or writer of the exchange.
	node, why, start := x.node, x.why, x.start
	x.c.c.SetDeadline(time.Time{})
	pc.Conn.SetDeadline(time.Time{})
	node.Sessions.Add(1)
	node.Active.Add(1)
	toNode, toClient, err := s.splicer.Splice(sess)
	node.Active.Add(-1)
	node.Sessions.Add(-1)
	x.node, x.why, x.start = node, why, start
	x.bytesIn, x.bytesOut = toNode, toClient
	s.logRequest(x, status, err)
	return false
}

// takeBuffered copies out the bytes br holds beyond what was parsed (a
// client's first frames sent right behind its upgrade request), or nil.
func takeBuffered(br *bufio.Reader) []byte {
	if br == nil || br.Buffered() == 0 {
		return nil
	}
	b, _ := br.Peek(br.Buffered())
	return append([]byte(nil), b...)
}
