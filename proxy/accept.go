package proxy

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tether-lb/tether/proxy/internal/proxyhdr"
	"github.com/tether-lb/tether/proxy/internal/route"
	"github.com/tether-lb/tether/proxy/internal/sockio"
	"github.com/tether-lb/tether/proxy/internal/wire"
	"github.com/tether-lb/tether/tlsterm"
	"github.com/valyala/fasthttp"
)

// acceptLoop accepts connections on ln and starts one goroutine per
// connection. Temporary errors (too many open files) back off up to a
// second, as net/http does; a closed listener ends the loop.
func (s *Server) acceptLoop(ln net.Listener, secure bool) error {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.acceptStopped() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isSyscallError(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.errLog.Error().Err(err).Dur("retry_in", backoff).Msg("accept")
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		cfg := s.cfg()
		if m := cfg.MaxConns; m > 0 && s.conns.open.Load() >= int64(m) {
			s.refuseConn(nc, cfg)
			continue
		}
		if cfg.ProxyProtocol && !proxyhdr.Trusted(cfg.ProxyProtocolFrom, nc.RemoteAddr()) {
			s.refuseProxy(nc, proxyhdr.ErrUntrusted)
			nc.Close()
			continue
		}
		c := &conn{s: s, nc: nc, remoteIP: remoteIP(nc.RemoteAddr()), secure: secure, born: time.Now().UnixNano()}
		var proxyWait time.Duration
		if cfg.ProxyProtocol { // decided with the trust check, from the same configuration
			proxyWait = cfg.HeaderTimeout
		}
		s.conns.opened(c)
		if hook := testHookAccepted.Load(); hook != nil {
			(*hook)()
		}
		go c.serve(proxyWait)
	}
}

// refuseConn closes a connection accepted past --max-conns. It is counted
// (tether_refused_connections_total{reason="max_conns"}), and one line a
// second at most is logged, saying how many refusals it left out since the
// one before: a flood of them must not flood the log. The line names the
// client: with the PROXY protocol, the address its header carries
// (refusedClient), the L4 tier's in "via".
func (s *Server) refuseConn(nc net.Conn, cfg *Config) {
	s.maxConnsRefused.Add(1)
	if n, ok := s.maxConnsLog.allow(time.Now(), time.Second); ok {
		remote := remoteIP(nc.RemoteAddr())
		e := s.log.Warn()
		if client := refusedClient(nc, cfg); client != "" {
			e, remote = e.Str("via", remote), client
		}
		e.Str("remote", remote).Int("max_conns", cfg.MaxConns).Uint64("suppressed", n).
			Msg("connection refused at --max-conns")
	}
	nc.Close()
}

// refusedHeaderWait bounds the wait for the PROXY header of a refused
// connection whose refusal is logged: the accept loop waits this long once
// a second at most.
const refusedHeaderWait = 50 * time.Millisecond

// refusedClient returns the client address in the PROXY protocol header of
// nc, refused, when the protocol is on, nc comes from a trusted source and
// its header arrives within refusedHeaderWait; else "".
func refusedClient(nc net.Conn, cfg *Config) string {
	if !cfg.ProxyProtocol || !proxyhdr.Trusted(cfg.ProxyProtocolFrom, nc.RemoteAddr()) {
		return ""
	}
	rc := sockio.RawConnOf(nc)
	if rc == nil {
		return ""
	}
	nc.SetReadDeadline(time.Now().Add(refusedHeaderWait))
	addr, err := proxyhdr.Read(nc, rc)
	if err != nil {
		return ""
	}
	return addr
}

// logSampler lets one event a period through and counts the others. Safe
// for concurrent use; the zero value is ready.
type logSampler struct {
	next       atomic.Int64 // unix nanoseconds before which events are only counted
	suppressed atomic.Uint64
}

// allow reports whether the event at now is logged and, if so, how many
// were left out since the last one logged.
func (l *logSampler) allow(now time.Time, period time.Duration) (suppressed uint64, ok bool) {
	t := now.UnixNano()
	next := l.next.Load()
	if t < next || !l.next.CompareAndSwap(next, t+int64(period)) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}

// isSyscallError reports an accept error that a system call returned
// (EMFILE, ENFILE, ECONNABORTED, ENOBUFS and the like): the listener is
// still open, so acceptLoop retries after a backoff rather than end.
func isSyscallError(err error) bool {
	var se *os.SyscallError
	return errors.As(err, &se)
}

// conn is one client connection. Its goroutine runs serve; between
// requests it holds no buffer and no header: those live in an exchange,
// borrowed while a burst of requests is being read and answered. An idle
// one on the http loops may hold not even its net.Conn: a cold connection
// keeps its socket as a bare descriptor (loopConn, httploop.go), and nc
// and raw are nil until it is served again.
//
// Every conn of an idle keep-alive connection is kept: its fields are
// ordered to fit a small size class.
type conn struct {
	s        *Server
	nc       net.Conn // guarded by s.conns.mu against Shutdown and HandOff; nil while cold
	remoteIP string
	raw      syscall.RawConn // c's, for raw reads and writes; nil on the TLS listener and while cold
	born     int64           // when it was accepted, unix nanoseconds (bornAt)
	// letGo, set by HandOff before it takes the conn (connIdle →
	// connHanded), is told when the goroutine that waited on it let go.
	letGo  *sync.WaitGroup
	served int32        // requests answered on this connection (it stops at math.MaxInt32)
	state  atomic.Int32 // connBusy, connIdle (waiting for a next request: Shutdown may wake it) or connHanded
	idx    int32        // its index in s.conns.active, guarded by s.conns.mu; -1 when out
	secure bool         // accepted on the TLS listener: c becomes a *tls.Conn
	linger bool         // an answer refused a request the client may still be sending: close lingering
	lc     loopConn     // its place on the http loops (httploop.go)
}

// bornAt is when c was accepted.
func (c *conn) bornAt() time.Time { return time.Unix(0, c.born) }

// testHookAccepted, set by tests only, runs in acceptLoop between the
// admission of a connection and the start of its goroutine.
var testHookAccepted atomic.Pointer[func()]

// testHookIdleWoke, set by tests only, runs in run when an idle
// connection's wait has ended, before the connection is taken back from
// connIdle.
var testHookIdleWoke atomic.Pointer[func(*conn)]

// serve runs the connection: the PROXY protocol header if required, the
// TLS handshake if any, then run. proxyWait, when set, is the time the
// PROXY protocol header has to arrive in: acceptLoop takes it from the
// configuration it checked the source against, so a reload between the two
// cannot make serve believe a header from a source that was never checked.
func (c *conn) serve(proxyWait time.Duration) {
	if proxyWait > 0 {
		// Before the ClientHello on the TLS listener. The header gets the
		// head's timeout; the request or the handshake then gets its own.
		if !c.proxyHeader(proxyWait, sockio.RawConnOf(c.nc)) {
			c.close()
			return
		}
	}
	// hot: read for a moment before waiting. Just after a TLS handshake the
	// first request may already sit in the TLS connection above its socket
	// (TLS 1.3 clients send it with their Finished), where a readiness wait
	// on the socket would not see it.
	hot := false
	if c.secure {
		if !c.handshake() {
			c.close()
			return
		}
		hot = true
	} else {
		c.raw = sockio.RawConnOf(c.nc)
	}
	if c.onLoops() {
		c.loopServe()
		return
	}
	c.run(hot)
}

// run waits for the next request without holding a buffer, then reads and
// answers requests while they keep coming (pipelining). When they stop, the
// connection goes back to waiting on a fresh goroutine (run again): this
// one's stack grew while it parsed and forwarded, and an idle keep-alive
// connection then keeps only a minimal one. The connection ends on the idle
// timeout, on close, on an error or when a response ends it; run then calls
// the server's wg.Done.
func (c *conn) run(hot bool) {
	s := c.s
	if !hot {
		wait := s.cfg().IdleTimeout
		if c.served == 0 {
			wait = s.cfg().HeaderTimeout
		}
		c.nc.SetReadDeadline(time.Now().Add(wait))
		c.state.Store(connIdle)
		var err error
		if s.isClosing() {
			err = errShutdown
		} else {
			err = sockio.WaitReadable(c.nc)
		}
		if hook := testHookIdleWoke.Load(); hook != nil {
			(*hook)(c)
		}
		if !c.state.CompareAndSwap(connIdle, connBusy) {
			// HandOff took the connection while it waited: whatever
			// arrived stays in the socket, for the process it goes to
			// (or for the run that Abort starts).
			c.letGo.Done()
			return
		}
		if grace := c.bornAt().Add(firstRequestGrace); err != nil && c.served == 0 && s.isClosing() && time.Now().Before(grace) {
			// Accepted just before the listeners closed: its client is
			// sending its first request (later ones reach the new
			// process). Wait for it until a moment after the accept
			// rather than drop it.
			c.nc.SetReadDeadline(grace)
			if sockio.WaitReadable(c.nc) == nil {
				err = nil
			}
		}
		// While tether drains, a request that has already arrived is still
		// answered (with Connection: close); only a silent connection
		// closes.
		if err != nil && !(s.isClosing() && sockio.ReadableNow(c.nc)) {
			c.close()
			return
		}
	}
	x := s.exchanges.Get().(*exchange)
	keep := x.serveBurst(c, hot)
	up, sess := x.pending, x.session
	x.pending, x.session = nil, nil
	x.release()
	s.exchanges.Put(x)
	switch {
	case up != nil:
		c.startSession(up, sess)
	case !keep || s.isClosing():
		c.close()
	default:
		go c.run(false)
	}
}

// firstRequestGrace is how long after its accept a connection may take to
// send its first request once Shutdown has begun.
const firstRequestGrace = time.Second

// handshake runs the TLS handshake in the connection's goroutine, under
// the handshake timeout and the cap on concurrent handshakes, and replaces
// c.c with the TLS connection. Plain HTTP sent to the TLS port gets a 400 in
// plain text. It reports whether the connection goes on.
func (c *conn) handshake() bool {
	s := c.s
	tc, err := s.hs.Handshake(context.Background(), sockio.WithRawIO(c.nc))
	switch {
	case err == nil:
		s.conns.setConn(c, tc)
		return true
	case errors.Is(err, tlsterm.ErrPlainHTTP):
		c.nc.SetDeadline(time.Now().Add(time.Second))
		c.nc.Write(plainHTTPToTLS)
		lingerClose(c.nc, s.cfg().LingerTimeout)
	default:
		s.errLog.Debug().Err(err).Str("remote", c.remoteIP).Msg("tls handshake")
	}
	return false
}

// plainHTTPToTLS answers a plain-HTTP request sent to the TLS port.
var plainHTTPToTLS = func() []byte {
	body := "tether: plain HTTP sent to the HTTPS port\n"
	return []byte("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body)
}()

// The states of a conn. Only its goroutine moves it between connBusy and
// connIdle; HandOff takes an idle one (connIdle → connHanded), and the
// goroutine, finding it so when its wait ends, lets go of it unread.
const (
	connBusy   int32 = iota // reading or answering, or not yet running
	connIdle                // waiting for a next request, holding nothing
	connHanded              // being handed to another process (Handoff)
)

// wakeIfIdle makes an idle connection's wait end now (Shutdown).
func (c *conn) wakeIfIdle() {
	if c.state.Load() == connIdle {
		c.nc.SetReadDeadline(pastDeadline)
	}
}

// pastDeadline is a read deadline that has passed: set on a waiting conn it
// ends the wait at once.
var pastDeadline = time.Unix(1, 0)

func (c *conn) close() {
	c.closeSocket()
	c.lc.place.Forget(c)
	c.s.conns.closed(c)
}

// closeSocket closes c's socket: its net.Conn, lingering when an answer
// asked for it, or its bare descriptor while cold.
func (c *conn) closeSocket() {
	switch {
	case c.lc.cold:
		sockio.CloseFD(int(c.lc.fd))
	case c.nc == nil: // a failed warm-up closed it
	case c.linger:
		lingerClose(c.nc, c.s.cfg().LingerTimeout)
		c.nc.Close()
	default:
		c.nc.Close()
	}
}

// dupSocket returns a close-on-exec duplicate of c's descriptor (a plain
// TCP connection's, warm or cold), leaving c as it was.
func (c *conn) dupSocket() (int, error) {
	if c.lc.cold {
		return sockio.Dup(int(c.lc.fd))
	}
	tc, ok := c.nc.(*net.TCPConn)
	if !ok {
		return -1, errors.New("not a TCP connection")
	}
	return sockio.DupFD(tc)
}

// serveBurst reads and answers requests on c while bytes keep arriving. It
// reports whether the connection stays open for more. With hot, the first
// request is read for at most sockio.HotWindow (a quiet connection stays open).
// On the http loops (lazy) the burst reads what is there and never waits
// for a next request: true then hands the connection back to its loop.
func (x *exchange) serveBurst(c *conn, hot bool) bool {
	s := c.s
	x.conn = c
	nc, raw := c.nc, c.raw
	if c.lc.cold {
		nc, raw = x.cold.Bind(int(c.lc.fd), c) // served as it is, made a net.Conn only to wait
	}
	x.cr.Reset(nc, raw, s.cfg().HeaderTimeout, s.cfg().WriteTimeout)
	x.lazy = c.onLoops()
	if x.lazy {
		x.cr.SetLazy()
	}
	x.br = s.getReader(&x.cr)
	x.bw = s.getWriter(&x.cr)
	if x.lazy {
		// The loop saw the socket readable (or the connection is new):
		// one read takes what is there; nothing there, it goes back.
		x.cr.TryNext()
		if _, err := x.br.Peek(1); err != nil {
			return err == sockio.ErrWouldBlock
		}
	}
	if hot {
		// A request comes at once or the connection goes back to waiting
		// (a quiet one then holds nothing, and Shutdown can close it).
		x.cr.SetReadLimit(sockio.HotWindow)
		if _, err := x.br.Peek(1); err != nil {
			return sockio.IsTimeout(err)
		}
	}
	for {
		x.begin()
		x.cr.SetReadLimitFrom(x.start, s.cfg().HeaderTimeout)
		maxFields := s.cfg().MaxHeaderFields
		fr, err := wire.ReadRequestHead(x.br, x.req, s.maxHead, maxFields)
		if err == wire.ErrHeadTooLarge {
			if big := s.grow(x.br, &x.cr); big != nil {
				x.br = big
				fr, err = wire.ReadRequestHead(x.br, x.req, s.maxHead, maxFields)
			}
		}
		if err != nil {
			x.headError(err)
			return false
		}
		if c.served < math.MaxInt32 {
			c.served++
		}
		if !s.handle(x, fr) {
			return false
		}
		if x.br == nil {
			// Released while a slow answer was awaited; a TLS connection
			// may still hold the client's next bytes above its socket, so
			// look through a reader before going idle.
			x.br = s.getReader(&x.cr)
		}
		if x.br.Buffered() == 0 && x.lazy {
			return true // its loop reports the next request
		}
		if x.br.Buffered() == 0 {
			// A busy client sends its next request at once: wait for it a
			// moment, holding the reader; then go idle without it.
			x.cr.SetReadLimit(sockio.HotWindow)
			if _, err := x.br.Peek(1); err != nil {
				return sockio.IsTimeout(err)
			}
		}
	}
}

// headError answers a request head that could not be read: 400, 408 or
// 431 and close; a client that closed or sent nothing gets no answer.
func (x *exchange) headError(err error) {
	s := x.conn.s
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), sockio.PeerGone(err):
		return
	case errors.As(err, &ne) && ne.Timeout():
		if x.br.Buffered() == 0 {
			return // nothing sent since the last answer: an idle close
		}
		x.refuse(408, err)
	case errors.Is(err, wire.ErrHeadTooLarge):
		x.refuse(431, err)
	case errors.Is(err, wire.ErrBadRequest):
		x.refuse(400, err)
	default:
		s.errLog.Debug().Err(err).Str("remote", x.conn.remoteIP).Msg("read request head")
	}
}

// begin starts a request on x. Its clock runs from now: the first byte of
// its head is at hand (buffered, or the socket is readable), so a head that
// trickles in counts from its start. Nothing of an earlier request stays in
// the per-request fields, whether it came on this connection or on another
// that borrowed x before.
func (x *exchange) begin() {
	x.start = time.Now()
	x.node, x.why, x.bytesIn, x.bytesOut, x.upgraded = nil, route.Balance, 0, 0, false
}

// refuse answers a head tether could not accept and logs it as a request.
// The head was not parsed: x.req still holds whatever request x read last
// (maybe another client's), so it is emptied and the line names no method
// or path.
func (x *exchange) refuse(status int, err error) {
	forgetRequest(x.req)
	x.writeError(status, err)
	x.s.recordRefused(x, status, err)
}

// forgetRequest empties h, keeping the settings of wire.NewRequestHeader.
// wire.ReadRequestHead fills h only once a whole head has passed the checks, so
// after a refused head h would otherwise hold the request it read before.
func forgetRequest(h *fasthttp.RequestHeader) {
	h.Reset()
	h.DisableSpecialHeader()
	h.SetNoDefaultContentType(true)
}

// writeError sends one of tether's own short answers and logs why. The
// connection is closed after it by the caller.
func (x *exchange) writeError(status int, err error) {
	s := x.conn.s
	resp := wire.ErrorResponse(status)
	if x.bw == nil {
		x.bw = s.getWriter(&x.cr)
	}
	// Counted before it goes out: a client that has the answer finds it
	// in /metrics.
	s.refused[refusedIndex(status)].Add(1)
	x.bw.Write(resp)
	x.bw.Flush()
	x.conn.linger = x.conn.linger || lingers(status)
	x.bytesOut += int64(len(resp))
	ev := s.errLog.Info()
	if status >= 500 {
		ev = s.errLog.Warn()
	}
	ev.Int("status", status).Str("remote", x.conn.remoteIP).Err(err).Msg("request refused")
}
