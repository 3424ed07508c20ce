package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/admin"
	"github.com/tether-lb/tether/proxy/internal/keepalive"
	"github.com/tether-lb/tether/proxy/internal/route"
	"github.com/tether-lb/tether/proxy/internal/sockio"
	"github.com/tether-lb/tether/proxy/internal/splice"
	"github.com/tether-lb/tether/proxy/internal/wire"
	"github.com/tether-lb/tether/tlsterm"
	"github.com/valyala/fasthttp"
)

// copyBufSize is the size of the pooled buffers that bodies and spliced
// bytes move through.
const copyBufSize = 32 << 10

// Server is one running tether: its listeners, client connections, the
// backend pool and the buffers they borrow.
type Server struct {
	conf    atomic.Pointer[Config]       // swapped whole by Reload
	router  atomic.Pointer[route.Router] // built from conf
	maxHead int                          // MaxHeaderBytes, fixed at start (reader pools)
	log     zerolog.Logger
	access  zerolog.Logger
	pool    *pool.Pool
	certs   *tlsterm.Certs      // nil without a TLS listener
	hs      *tlsterm.Handshaker // nil without a TLS listener
	engine  splice.Engine       // runs spliced sessions: the loops, or goroutines
	loops   *splice.Loops       // the engine when loops run; nil otherwise
	http    *keepalive.Loops    // idle plain client connections (--http-loops); nil: goroutines
	errLog  zerolog.Logger      // sampled: one bad client must not flood the log

	exchanges sync.Pool // *exchange
	readers   sync.Pool // *bufio.Reader of smallHead bytes
	large     sync.Pool // *bufio.Reader of MaxHeaderBytes, for the rare larger head
	writers   sync.Pool // *bufio.Writer of 4 KiB
	bufs      sync.Pool // *[]byte of copyBufSize

	conns        connSet                       // client connections and sessions: counted, waited for, woken
	tlsSessions  atomic.Int64                  // WebSocket sessions over TLS running now
	predecessors atomic.Pointer[[]Predecessor] // the old processes still serving (SetPredecessors)
	refused      [len(admin.RefusedStatuses)]atomic.Uint64
	started      time.Time

	maxConnsRefused atomic.Uint64 // connections closed at accept by --max-conns
	maxConnsLog     logSampler    // their log lines, one a second
	proxyRefused    atomic.Uint64 // connections closed for their PROXY protocol header or source
	proxyLog        logSampler    // their log lines, one a second

	adminToken atomic.Pointer[admin.Token] // the admin token in force; nil: none

	mu        sync.Mutex // guards listeners and admins; draining is set under it
	listeners []net.Listener
	admins    []*http.Server
	draining  atomic.Bool // Shutdown has begun: no listener is added, answers close their connections
	withdrawn atomic.Bool // Withdraw was called: /healthz answers 503

	adminLns []net.Listener // the admin listeners, for StopAccepting; guarded by mu
	stopped  atomic.Bool    // StopAccepting was called (set under mu): no listener is added
	handing  atomic.Bool    // HandOff ran: this process retires, answers close their connections
}

// New checks cfg, applies its defaults and builds a Server with its backend
// pool (whose health loops start now). log receives lifecycle and error
// lines; access receives one line per request or session when
// cfg.AccessLog is set.
func New(cfg Config, log, access zerolog.Logger) (*Server, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := backendTLS(&cfg, log); err != nil {
		return nil, err
	}
	adminToken, err := admin.LoadToken(cfg.AdminTokenFile)
	if err != nil {
		return nil, err
	}
	var certs *tlsterm.Certs
	var hs *tlsterm.Handshaker
	if cfg.TLS.Listen != "" {
		c, err := tlsterm.LoadCerts(&cfg.TLS, log)
		if err != nil {
			return nil, err
		}
		certs, hs = c, tlsterm.NewHandshaker(&cfg.TLS, c.ServerConfig())
	}
	p, err := pool.New(cfg.Pool, log)
	if err != nil {
		if certs != nil {
			certs.Close()
		}
		return nil, err
	}
	s := &Server{
		maxHead: cfg.MaxHeaderBytes,
		log:     log,
		access:  access,
		pool:    p,
		certs:   certs,
		hs:      hs,
		errLog:  log.Sample(&zerolog.BurstSampler{Burst: 20, Period: time.Second}),
		conns:   newConnSet(),
		started: time.Now(),
	}
	s.adminToken.Store(adminToken)
	s.engine = splice.NewGo(copyBufSize, log)
	if cfg.SpliceLoops >= 0 {
		if ls, err := splice.NewLoops(cfg.SpliceLoops, copyBufSize, log); err != nil {
			log.Warn().Err(err).Msg("splice loops unavailable; sessions run on goroutines")
		} else {
			s.loops, s.engine = ls, ls // TLS sessions still go to goroutines inside Start
		}
	}
	if cfg.HTTPLoops >= 0 {
		if ls, err := newHTTPLoops(s, cfg.HTTPLoops); err != nil {
			log.Warn().Err(err).Msg("http loops unavailable; client connections keep goroutines")
		} else {
			s.http = ls
		}
	}
	s.conf.Store(&cfg)
	r := route.New(cfg.StickyCookie, cfg.StickyParam)
	s.router.Store(&r)
	maxHead := cfg.MaxHeaderBytes
	s.exchanges.New = func() any { return newExchange(s) }
	s.readers.New = func() any { return bufio.NewReaderSize(nil, min(smallHead, maxHead)) }
	s.large.New = func() any { return bufio.NewReaderSize(nil, maxHead) }
	s.writers.New = func() any { return bufio.NewWriterSize(nil, 4096) }
	s.bufs.New = func() any { b := make([]byte, copyBufSize); return &b }
	return s, nil
}

// backendTLS sets the client TLS configuration for https nodes from the
// TLS settings (--backend-ca, --backend-insecure) when any node is https or
// --backend-ca is given: a bad CA file is a configuration error at start
// even before a reload brings the first https node.
func backendTLS(cfg *Config, log zerolog.Logger) error {
	https := cfg.Pool.HasHTTPS()
	if !https && cfg.TLS.BackendCA == "" {
		return nil
	}
	tc, err := tlsterm.ClientConfig(&cfg.TLS)
	if err != nil {
		return err
	}
	if https && cfg.TLS.BackendInsecure {
		log.Warn().Msg("--backend-insecure: https nodes' certificates are not verified")
	}
	cfg.Pool.TLS = tc
	return nil
}

// cfg returns the configuration in force: one atomic load.
func (s *Server) cfg() *Config { return s.conf.Load() }

// Reload applies a new configuration to the running server: nodes added,
// removed (drained) or changed, timeouts, limits and stickiness names.
// Established connections are untouched, except those to a removed node,
// which drain (see pool.Update). Listen addresses, --reuseport, --pprof and
// --max-header-bytes need a restart: a change to them is logged and
// ignored. A configuration that does not validate changes nothing.
func (s *Server) Reload(cfg Config) error {
	cfg.SetDefaults()
	old := s.cfg()
	for _, f := range []struct {
		flag     string
		old, new any
	}{
		{"--listen", old.Listen, cfg.Listen},
		{"--admin", old.Admin, cfg.Admin},
		{"--reuseport", old.ReusePort, cfg.ReusePort},
		{"--pprof", old.Pprof, cfg.Pprof},
		{"--max-header-bytes", old.MaxHeaderBytes, cfg.MaxHeaderBytes},
		{"--splice-loops", old.SpliceLoops, cfg.SpliceLoops},
		{"--http-loops", old.HTTPLoops, cfg.HTTPLoops},
		{"--tls-listen", old.TLS.Listen, cfg.TLS.Listen},
		{"--tls-min", old.TLS.MinVersion, cfg.TLS.MinVersion},
	} {
		if f.old != f.new {
			s.log.Warn().Str("flag", f.flag).Interface("running", f.old).Interface("file", f.new).Msg("reload: this setting needs a restart; kept")
		}
	}
	cfg.Listen, cfg.Admin, cfg.ReusePort, cfg.Pprof, cfg.MaxHeaderBytes = old.Listen, old.Admin, old.ReusePort, old.Pprof, old.MaxHeaderBytes
	cfg.SpliceLoops, cfg.HTTPLoops = old.SpliceLoops, old.HTTPLoops
	cfg.TLS.Listen, cfg.TLS.MinVersion = old.TLS.Listen, old.TLS.MinVersion
	if err := cfg.Validate(); err != nil { // after the kept settings: a bad one there is ignored as its change is
		return err
	}
	if err := backendTLS(&cfg, s.log); err != nil {
		return err
	}
	adminToken, err := admin.LoadToken(cfg.AdminTokenFile) // re-read: tokens rotate
	if err != nil {
		return err
	}
	if s.certs != nil {
		if err := s.certs.Reload(&cfg.TLS); err != nil {
			return err
		}
	}
	if err := s.pool.Update(cfg.Pool); err != nil {
		return err
	}
	r := route.New(cfg.StickyCookie, cfg.StickyParam)
	s.router.Store(&r)
	s.conf.Store(&cfg)
	s.adminToken.Store(adminToken)
	s.log.Info().Int("nodes", len(cfg.Pool.Nodes)).Msg("configuration reloaded")
	return nil
}

// Pool returns the backend pool (for the admin endpoints and tests).
func (s *Server) Pool() *pool.Pool { return s.pool }

// Conns returns the number of open client connections.
func (s *Server) Conns() int64 { return s.conns.open.Load() }

// ListenAndServe listens on cfg.Listen (plain HTTP) and serves until
// Shutdown. It returns nil at once when cfg.Listen is empty.
func (s *Server) ListenAndServe() error {
	if s.cfg().Listen == "" {
		return nil
	}
	ln, err := sockio.Listen(s.cfg().Listen, s.cfg().ReusePort)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	return s.Serve(ln)
}

// ListenAndServeTLS listens on cfg.TLS.Listen and serves HTTPS until
// Shutdown. It returns nil at once without a TLS listener.
func (s *Server) ListenAndServeTLS() error {
	if s.hs == nil {
		return nil
	}
	ln, err := sockio.Listen(s.cfg().TLS.Listen, s.cfg().ReusePort)
	if err != nil {
		return fmt.Errorf("--tls-listen: %w", err)
	}
	return s.serve(ln, true)
}

// ListenAndServeAdmin listens on cfg.Admin and serves the admin endpoints
// until Shutdown. It returns nil at once when cfg.Admin is empty.
func (s *Server) ListenAndServeAdmin() error {
	if s.cfg().Admin == "" {
		return nil
	}
	ln, err := sockio.Listen(s.cfg().Admin, s.cfg().ReusePort)
	if err != nil {
		return fmt.Errorf("--admin: %w", err)
	}
	return s.ServeAdmin(ln)
}

// Serve accepts client connections on ln until Shutdown; it returns nil
// after Shutdown and the accept error otherwise.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeTLS is Serve for a listener whose connections start with a TLS
// handshake (the server needs a TLS configuration: cfg.TLS.Listen set).
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.hs == nil {
		return errors.New("proxy: ServeTLS without a TLS configuration")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, secure bool) error {
	s.mu.Lock()
	if s.acceptStopped() {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners = append(s.listeners, ln)
	s.conns.wg.Add(1)
	s.mu.Unlock()
	defer s.conns.wg.Done()
	s.log.Info().Str("addr", ln.Addr().String()).Bool("tls", secure).Int("max_conns", s.cfg().MaxConns).Msg("listening")
	return s.acceptLoop(ln, secure)
}

// Shutdown drains tether: it stops accepting, closes idle keep-alive
// connections, lets requests in flight finish (their answers say
// "Connection: close"), and tells every WebSocket client "going away" (Close
// 1001 at a frame boundary), spread evenly over the first half of the time
// ctx allows so the clients do not reconnect elsewhere as one storm. When ctx
// ends first, it closes every connection. The admin listener answers
// /healthz with 503 until the end; then it and the backend pool close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.conns.wakeIdle()
	s.http.Drain()

	done := make(chan struct{})
	go s.waitConns(done)
	var spread time.Duration
	if dl, ok := ctx.Deadline(); ok {
		spread = time.Until(dl) / 2
	}
	s.pool.EvictAll(ctx, pool.CloseGoingAway, spread)
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.conns.closeAll() // sessions on loops left the set at their start
		s.loops.Close()    // they are closed here
		s.http.Close()     // and idle connections on the http loops here
		<-done
	}
	s.mu.Lock()
	for _, a := range s.admins {
		a.Close()
	}
	s.mu.Unlock()
	s.loops.Close()
	s.http.Close()
	s.pool.Close()
	if s.certs != nil {
		s.certs.Close()
	}
	return err
}

// waitConns closes done when every connection and accept loop has ended.
func (s *Server) waitConns(done chan struct{}) {
	s.conns.wg.Wait()
	close(done)
}

// isClosing reports whether Shutdown has begun.
func (s *Server) isClosing() bool { return s.draining.Load() }

// closesAfterAnswer reports whether answers say Connection: close and
// their connections end: tether drains, or a hand-over has begun, after
// which every connection this process still holds (one busy with a
// request when its idle peers were handed over) ends with its answer. Its
// client's next request then goes to the process that took the
// listeners, instead of racing this one's close.
func (s *Server) closesAfterAnswer() bool { return s.draining.Load() || s.handing.Load() }

// smallHead is the size of the readers lent first: most heads fit, and a
// larger one moves to a MaxHeaderBytes reader (grow).
const smallHead = 8 << 10

// getReader lends a buffered reader of smallHead bytes over r.
func (s *Server) getReader(r *sockio.DeadlineConn) *bufio.Reader {
	br := s.readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

// putReader returns br to its pool; it must hold no unread bytes that
// matter.
func (s *Server) putReader(br *bufio.Reader) {
	br.Reset(nil)
	if br.Size() == s.maxHead && s.maxHead > smallHead {
		s.large.Put(br)
		return
	}
	s.readers.Put(br)
}

// grow moves the bytes br holds into a MaxHeaderBytes reader over r, for a
// head that did not fit br, and gives br back. It returns nil when br is as
// large as heads may be.
func (s *Server) grow(br *bufio.Reader, r *sockio.DeadlineConn) *bufio.Reader {
	if br.Size() >= s.maxHead {
		return nil
	}
	held, _ := br.Peek(br.Buffered())
	big := s.large.Get().(*bufio.Reader)
	big.Reset(r)
	r.SetPrefix(held) // the big reader's first read takes them
	_, err := big.Peek(len(held))
	r.SetPrefix(nil)
	s.putReader(br)
	if err != nil {
		// Unreachable: the prefix is served from memory in one read.
		s.putReader(big)
		return nil
	}
	return big
}

func (s *Server) getWriter(w *sockio.DeadlineConn) *bufio.Writer {
	bw := s.writers.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func (s *Server) putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	s.writers.Put(bw)
}

// Lingering close. After tether refuses a request it has not read whole
// (400, 408, 413, 431) the client may still be sending it; closing a socket
// with unread bytes makes the kernel send a reset instead of a FIN, and a
// reset can destroy the answer before the client reads it. So, as nginx's
// lingering close does, the connection is half-closed once the answer is
// out, and what the client still sends is read and dropped until it closes
// its side, or for --linger-timeout or lingerBytes at most, before the
// close.
const lingerBytes = 256 << 10

// lingers reports the statuses whose answers close their connection
// lingering: the client may be sending the rest of its request.
func lingers(status int) bool {
	switch status {
	case 400, 408, 413, 431:
		return true
	}
	return false
}

// lingerClose half-closes c and reads and drops what the client still
// sends, until it ends its side or d or lingerBytes pass. The caller
// closes c after.
func lingerClose(c net.Conn, d time.Duration) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(d))
	io.Copy(io.Discard, io.LimitReader(c, lingerBytes))
}

// errShutdown ends idle connections during Shutdown.
var errShutdown = errors.New("proxy: shutting down")

// newFastHeaders returns the per-exchange request header value.
func newFastHeaders() *fasthttp.RequestHeader {
	return wire.NewRequestHeader()
}
