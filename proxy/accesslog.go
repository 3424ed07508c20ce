package proxy

import (
	"net"
	"time"
)

// maxLoggedPath bounds the request target written to the access log.
const maxLoggedPath = 512

// record counts one finished exchange for /metrics and writes its access
// log line. "why" says how the node was chosen; dur runs from the first byte
// of the head.
func (s *Server) record(x *exchange, status int, err error) { s.recordLine(x, status, err, true) }

// recordRefused is record for a head that was never parsed (400, 408, 431
// at the head): its line has no method or path, only what was read.
func (s *Server) recordRefused(x *exchange, status int, err error) {
	s.recordLine(x, status, err, false)
}

// recordLine is record; head says whether x.req holds this request's head.
func (s *Server) recordLine(x *exchange, status int, err error, head bool) {
	if n := x.node; n != nil {
		n.Stats.CountStatus(status)
		n.Stats.BytesIn.Add(uint64(x.bytesIn))
		n.Stats.BytesOut.Add(uint64(x.bytesOut))
	}
	if !s.cfg().AccessLog {
		return
	}
	e := s.access.Info()
	if !e.Enabled() {
		return
	}
	e = e.Str("remote", x.conn.remoteIP)
	if head {
		path := x.req.RequestURI()
		if len(path) > maxLoggedPath {
			path = path[:maxLoggedPath]
		}
		e = e.Bytes("method", x.req.Method()).Bytes("path", path)
	}
	e = e.Int("status", status).
		Int64("bytes_in", x.bytesIn).
		Int64("bytes_out", x.bytesOut).
		Dur("dur", time.Since(x.start))
	if x.node != nil {
		e = e.Str("node", x.node.Name).Str("addr", x.node.Addr).Str("why", x.why.String())
	}
	if x.upgraded {
		e = e.Bool("ws", true)
	}
	if err != nil {
		e = e.Err(err)
	}
	e.Send()
}

// remoteIP returns the IP of a remote address as logged and forwarded: one
// string per connection.
func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
