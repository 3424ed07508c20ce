package proxy

import (
	"net"
	"net/http"
	"time"

	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/admin"
)

// The admin endpoints are package admin's; a Server is what they read and
// act on, as adminView.

// adminView is a Server as the admin endpoints see it.
type adminView Server

var _ admin.Server = (*adminView)(nil)

// Nodes implements admin.Server: the table's nodes.
func (v *adminView) Nodes() []*pool.Node { return v.pool.Table().Nodes() }

// Node implements admin.Server: the live node of that name.
func (v *adminView) Node(name string) *pool.Node { return v.pool.Node(name) }

// Ready implements admin.Server: false once Withdraw or Shutdown began.
func (v *adminView) Ready() bool {
	return !v.withdrawn.Load() && !(*Server)(v).isClosing()
}

// Access implements admin.Server: --admin-hosts and the token in force.
func (v *adminView) Access() admin.Access {
	return admin.Access{Hosts: (*Server)(v).cfg().AdminHosts, Token: v.adminToken.Load()}
}

// Counters implements admin.Server.
func (v *adminView) Counters() admin.Counters {
	c := admin.Counters{
		Started:         v.started,
		ClientConns:     v.conns.open.Load(),
		MaxConnsRefused: v.maxConnsRefused.Load(),
		ProxyRefused:    v.proxyRefused.Load(),
		DNS:             v.pool.DNSLookups(),
	}
	for i := range v.refused {
		c.Refused[i] = v.refused[i].Load()
	}
	if v.hs != nil {
		hs := v.hs.Stats()
		c.TLS = &hs
	}
	return c
}

// refusedIndex maps a status tether answered itself to its counter.
func refusedIndex(status int) int {
	for i, s := range admin.RefusedStatuses {
		if s == status {
			return i
		}
	}
	return len(admin.RefusedStatuses) - 1
}

// AdminHandler serves the admin endpoints (package admin): /metrics,
// /status, /healthz, /livez, the node actions and with Config.Pprof the Go
// profiler, behind the Host, token and cross-site checks.
func (s *Server) AdminHandler() http.Handler {
	return admin.Handler((*adminView)(s), s.cfg().Pprof, s.log, s.errLog)
}

// ServeAdmin serves the admin endpoints on ln until Shutdown.
func (s *Server) ServeAdmin(ln net.Listener) error {
	srv := admin.NewHTTPServer(s.AdminHandler(), s.cfg().Pprof)
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.admins = append(s.admins, srv)
	s.mu.Unlock()
	s.log.Info().Str("addr", ln.Addr().String()).Bool("token", s.adminToken.Load() != nil).Msg("admin listening")
	if !s.trackAdmin(ln) {
		return nil
	}
	if err := srv.Serve(ln); err != http.ErrServerClosed && !s.acceptStopped() {
		return err
	}
	return nil
}

// Withdraw makes /healthz answer 503 from now on while tether goes on
// accepting and serving: the first step of a drain behind an L4 tier, whose
// health checks take this tether out of rotation before Shutdown closes its
// listeners. It returns Config.DrainDelay, how long the caller should keep
// serving before it calls Shutdown. Shutdown alone also makes /healthz 503.
func (s *Server) Withdraw() time.Duration {
	s.withdrawn.Store(true)
	return s.cfg().DrainDelay
}
