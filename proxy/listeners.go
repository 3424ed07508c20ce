package proxy

import (
	"net"

	"github.com/tether-lb/tether/proxy/internal/sockio"
)

// Listen opens a TCP listener on addr the way tether's own listeners are
// opened, with SO_REUSEPORT when reuse is set, for Serve, ServeTLS and
// ServeAdmin.
func Listen(addr string, reuse bool) (net.Listener, error) { return sockio.Listen(addr, reuse) }

// StopAccepting closes every listener, the admin listeners among them
// (and the admin endpoints' idle connections; the others close after
// their answer), and drains nothing: connections and sessions go on as they are, and the
// accept loops and ServeAdmin return nil. It is the first step of a
// hand-over, once the new process serves on copies of the same sockets:
// connections still queued in them are the new process's to accept.
// Shutdown after it drains as usual.
func (s *Server) StopAccepting() {
	s.mu.Lock()
	s.stopped.Store(true)
	for _, ln := range s.listeners {
		ln.Close()
	}
	for _, ln := range s.adminLns {
		ln.Close()
	}
	for _, srv := range s.admins {
		// Operators' kept-alive connections (a scraper's) close too: their
		// next requests reach the new process, not this one.
		srv.SetKeepAlivesEnabled(false)
	}
	s.mu.Unlock()
}

// acceptStopped reports whether StopAccepting or Shutdown closed the
// listeners: an accept error is then the end of the loop, not a failure.
func (s *Server) acceptStopped() bool { return s.stopped.Load() || s.isClosing() }

// trackAdmin records an admin listener for StopAccepting. It reports false,
// closing ln, when the listeners are already stopped.
func (s *Server) trackAdmin(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acceptStopped() {
		ln.Close()
		return false
	}
	s.adminLns = append(s.adminLns, ln)
	return true
}
