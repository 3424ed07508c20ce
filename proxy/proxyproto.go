package proxy

import (
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/tether-lb/tether/proxy/internal/proxyhdr"
)

// proxyHeader reads the connection's PROXY protocol header under the header
// timeout and records its client address. It reports whether the
// connection goes on; one that does not is counted and logged (sampled),
// except a silent one.
func (c *conn) proxyHeader(timeout time.Duration, rc syscall.RawConn) bool {
	if rc == nil {
		c.s.refuseProxy(c.nc, errors.New("proxy protocol: not a TCP socket"))
		return false
	}
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	addr, err := proxyhdr.Read(c.nc, rc)
	if errors.Is(err, proxyhdr.ErrSilent) {
		c.s.errLog.Debug().Str("remote", c.remoteIP).Err(err).Msg("connection closed")
		return false
	}
	if err != nil {
		c.s.refuseProxy(c.nc, err)
		return false
	}
	if addr != "" {
		c.remoteIP = addr
	}
	return true
}

// refuseProxy counts a connection refused for its PROXY protocol header or
// its source (tether_refused_connections_total{reason="proxy_protocol"}) and
// logs one line a second at most, saying how many it left out; the caller
// closes it.
func (s *Server) refuseProxy(nc net.Conn, err error) {
	s.proxyRefused.Add(1)
	if n, ok := s.proxyLog.allow(time.Now(), time.Second); ok {
		s.log.Warn().Str("remote", remoteIP(nc.RemoteAddr())).Err(err).Uint64("suppressed", n).
			Msg("connection refused: PROXY protocol")
	}
}
