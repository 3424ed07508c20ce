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

// Predecessors implements admin.Server: as SetPredecessors left them.
func (v *adminView) Predecessors() []admin.Predecessor {
	if p := v.predecessors.Load(); p != nil {
		return *p
	}
	return nil
}

// Occupancy is what a tether process holds now: the figures an old process
// reports to its successor after a hand-over, and /status shows of it.
type Occupancy = admin.Occupancy

// Predecessor is an older tether process that handed over to this one (or
// to one before it) and still serves what could not move: its PID, version,
// Occupancy, and when it reported them. It encodes as JSON.
type Predecessor = admin.Predecessor

// Occupancy returns what this server holds now: client connections open
// (sessions not included), WebSocket sessions (of which over TLS), and
// requests being answered. Safe for concurrent use.
func (s *Server) Occupancy() Occupancy {
	var o Occupancy
	for _, n := range s.pool.Table().Nodes() {
		o.Sessions += n.Sessions()
		o.InFlight += n.InFlight()
	}
	o.TLSSessions = s.tlsSessions.Load()
	o.Conns = max(s.conns.open.Load()-o.Sessions, 0)
	return o
}

// SetPredecessors sets the older processes /status and /metrics show (nil
// or empty: none); of two entries with one PID the first counts. Safe for
// concurrent use.
func (s *Server) SetPredecessors(p []Predecessor) {
	out := make([]Predecessor, 0, len(p))
	seen := make(map[int]bool, len(p))
	for _, e := range p {
		if !seen[e.PID] {
			seen[e.PID] = true
			out = append(out, e)
		}
	}
	s.predecessors.Store(&out)
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
