package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/sockio"
	"github.com/tether-lb/tether/proxy/internal/splice"
	"github.com/tether-lb/tether/proxy/internal/wire"
	"github.com/valyala/fasthttp"
)

// exchange is what one burst of requests on a client connection borrows:
// headers, buffered reader and writer, scratch space. It goes back to the
// server's pool when the connection falls idle, so an idle connection holds
// none of it.
type exchange struct {
	s    *Server
	c    *conn
	req  *fasthttp.RequestHeader
	resp *fasthttp.ResponseHeader

	cr  sockio.DeadlineConn // the client connection, with deadlines
	nr  sockio.DeadlineConn // the node connection, with deadlines
	br  *bufio.Reader       // client reader; nil once released mid-request
	bw  *bufio.Writer       // client writer
	nbr *bufio.Reader       // node reader, while an answer is read

	head    []byte    // serialized head scratch
	param   [256]byte // percent-decoded stickiness parameter
	xff     []byte    // X-Forwarded-For value scratch
	connTok [][]byte  // header names listed in Connection

	// per request (begin resets them)
	node     *pool.Node
	why      reason
	start    time.Time
	bytesIn  int64 // request body bytes
	bytesOut int64 // answer bytes written to the client
	upgraded bool
	expect   bool                   // the client sent Expect: 100-continue
	accept   [wire.WSAcceptLen]byte // with an upgrade: the Sec-WebSocket-Accept its 101 must carry
	pending  *upgraded              // a 101 was relayed: splice once the exchange is released
	session  *splice.Session        // with pending: what the splicer gets
}

func newExchange(s *Server) *exchange {
	req, resp := newFastHeaders()
	return &exchange{s: s, req: req, resp: resp, head: make([]byte, 0, 1024)}
}

// release gives back the borrowed reader and writer.
func (x *exchange) release() {
	if x.br != nil {
		x.s.putReader(x.br)
		x.br = nil
	}
	if x.bw != nil {
		x.s.putWriter(x.bw)
		x.bw = nil
	}
	x.cr.Conn, x.nr.Conn, x.c, x.node = nil, nil, nil, nil
	x.cr.Raw.Set(nil, nil)
	x.nr.Raw.Set(nil, nil)
}

var (
	strConnection      = []byte("Connection")
	strKeepAlive       = []byte("Keep-Alive")
	strUpgrade         = []byte("Upgrade")
	strTE              = []byte("Te")
	strTrailer         = []byte("Trailer")
	strTransferEnc     = []byte("Transfer-Encoding")
	strContentLength   = []byte("Content-Length")
	strProxyConnection = []byte("Proxy-Connection")
	strProxyAuthz      = []byte("Proxy-Authorization")
	strProxyAuthn      = []byte("Proxy-Authenticate")
	strExpect          = []byte("Expect")
	strXFF             = []byte("X-Forwarded-For")
	strXFProto         = []byte("X-Forwarded-Proto")
	strXFHost          = []byte("X-Forwarded-Host")
	strXRealIP         = []byte("X-Real-Ip")
	strHost            = []byte("Host")
	strHTTP            = []byte("http")
	strHTTPS           = []byte("https")
	strWebSocket       = []byte("websocket")
	strClose           = []byte("close")
	strKeepAliveTok    = []byte("keep-alive")
	strUpgradeTok      = []byte("upgrade")
	str100Continue     = []byte("100-continue")
	strChunked         = []byte("chunked")
	strHTTP11          = []byte("HTTP/1.1")
	strCRLF            = []byte("\r\n")
	strColonSpace      = []byte(": ")
	strContinue        = []byte("HTTP/1.1 100 Continue\r\n\r\n")
)

// handle routes one request, forwards it and relays the answer (or splices
// an upgraded connection). It reports whether the client connection can
// carry another request.
func (s *Server) handle(x *exchange, fr wire.Framing) bool {
	t := s.pool.Table()
	node, why := s.router.Load().route(t, x.req, x.param[:])
	x.why = why
	upgrade := fr.Upgrade
	if upgrade {
		wire.WSAccept(&x.accept, x.req.PeekBytes(strWSKey))
	}
	keep := clientKeepAlive(x.req) && !upgrade && !s.draining.Load()
	x.prepareRequest(upgrade)
	if max := s.cfg().MaxBodyBytes; max > 0 && !fr.Chunked && fr.Length > max {
		x.refuseBody(fmt.Errorf("%w: Content-Length %d, --max-body-bytes %d", wire.ErrBodyTooLarge, fr.Length, max))
		return false
	}

	var tried *pool.Node
	fresh := false
	for attempt := 0; ; attempt++ {
		if node == nil {
			x.writeError(503, pool.ErrNoHealthyNode)
			s.record(x, 503, pool.ErrNoHealthyNode)
			return false
		}
		x.node = node
		pc, err := node.Get(fresh)
		if err != nil {
			// Nothing was sent: any other open node may take it, unless
			// tether itself is out of descriptors or ports.
			if errors.Is(err, pool.ErrLocalLimit) {
				s.errLog.Error().Err(err).Msg("out of descriptors or ports: raise the limit (LimitNOFILE) or lower --max-conns")
			} else if attempt < len(t.Nodes()) {
				tried = node
				tried.Stats.Failovers.Add(1)
				node, x.why = s.pool.Table().Pick(tried), viaFailover
				continue
			}
			x.writeError(503, err)
			s.record(x, 503, err)
			return false
		}
		node.Active.Add(1)
		node.InFlight.Add(1)
		ok, retry := x.exchangeWith(pc, fr, upgrade, keep)
		node.InFlight.Add(-1)
		node.Active.Add(-1)
		if retry {
			if attempt <= len(t.Nodes()) {
				// A reused connection the node had closed: route again, as
				// the node may have gone down or been replaced meanwhile (a
				// node that is down is never dialled); the same node gets a
				// new connection.
				prev := node
				t = s.pool.Table()
				node, x.why = s.router.Load().route(t, x.req, x.param[:])
				fresh = node == prev
				continue
			}
			err := fmt.Errorf("node %s: pooled connections failed %d times", node.Name, attempt+1)
			x.writeError(502, err)
			s.record(x, 502, err)
			return false
		}
		return ok
	}
}

// exchangeWith sends the request on pc and relays the answer. ok reports
// whether the client connection stays open; retry asks handle to send the
// request again because pc was a reused connection that failed before any
// of the request could have been processed (nothing of a body was sent).
func (x *exchange) exchangeWith(pc *pool.Conn, fr wire.Framing, upgrade, keep bool) (ok, retry bool) {
	s := x.s
	x.nr.Reset(pc.Conn, pc.Raw, s.cfg().UpstreamTimeout, s.cfg().WriteTimeout)
	// A request without a body goes out inside the first read of its
	// answer (sendBeforeRead): one write, then the wait, and no read that
	// finds nothing. Others are written first, their bodies streamed.
	early := !fr.Chunked && fr.Length <= 0 && x.nr.Raw.Use()
	var sentBody bool
	var err error
	if early {
		x.head = x.req.AppendBytes(x.head[:0])
		x.nr.Raw.SendBeforeRead(x.head)
		if h := testHookSendEarly; h != nil {
			h(pc.Conn)
		}
	} else {
		nbw := s.getWriter(&x.nr)
		sentBody, err = x.sendRequest(nbw, fr)
		s.putWriter(nbw)
	}
	if err != nil {
		pc.Close()
		if errors.Is(err, errClientBody) {
			// The client sent a bad body (400) or stopped sending it (408);
			// a client that is gone gets nothing.
			var ne net.Error
			switch {
			case errors.Is(err, wire.ErrBodyTooLarge):
				x.refuseBody(err)
			case errors.Is(err, wire.ErrBadRequest):
				x.writeError(400, err)
				s.record(x, 400, err)
			case errors.As(err, &ne) && ne.Timeout():
				x.writeError(408, err)
				s.record(x, 408, err)
			default:
				s.record(x, 400, err)
			}
			return false, false
		}
		if staleConn(pc, err, sentBody) {
			return false, true
		}
		return x.nodeFailed(pc, err, false), false
	}

	// Most answers start within a few milliseconds: wait for the first byte
	// holding the reader (one read). A slower one (a long poll may take
	// minutes) is waited for holding no buffer at all, the client's reader
	// included if the client sent nothing more.
	nbr := s.getReader(&x.nr)
	asked := time.Now()
	x.nr.SetReadLimit(sockio.HotWindow)
	_, err = nbr.Peek(1)
	if rest := x.nr.Raw.Unsent(); early && rest != nil {
		// The head did not all go out with the read (a full socket buffer,
		// or the read ended before trying): write the rest, then wait. A
		// failed write is the request's, never a wait for an answer.
		if _, err := x.nr.Write(rest); err != nil {
			s.putReader(nbr)
			pc.Close()
			if staleConn(pc, err, false) {
				return false, true
			}
			return x.nodeFailed(pc, err, false), false
		}
		x.nr.SetReadLimit(sockio.HotWindow)
		_, err = nbr.Peek(1)
	}
	if err != nil {
		s.putReader(nbr)
		if !isTimeout(err) {
			pc.Close()
			if staleConn(pc, err, sentBody) {
				return false, true
			}
			return x.nodeFailed(pc, err, false), false
		}
		if x.br != nil && x.br.Buffered() == 0 {
			x.s.putReader(x.br)
			x.br = nil
		}
		pc.SetReadDeadline(asked.Add(s.cfg().UpstreamTimeout))
		if err := x.awaitAnswer(pc, asked.Add(s.cfg().UpstreamTimeout)); err != nil {
			pc.Close()
			if err == errClientGone {
				s.record(x, statusClientGone, err)
				return false, false
			}
			return x.nodeFailed(pc, err, false), false
		}
		nbr = s.getReader(&x.nr)
	}
	x.nbr = nbr
	defer x.putNodeReader()
	x.nr.SetReadTimeout(s.cfg().UpstreamTimeout)
	isHead := x.req.IsHead()
	var rfr wire.Framing
	for interim := 0; ; interim++ {
		if interim > maxInterim {
			pc.Close()
			return x.nodeFailed(pc, fmt.Errorf("%w: more than %d interim answers", wire.ErrBadResponse, maxInterim), true), false
		}
		rfr, err = wire.ReadResponseHead(nbr, x.resp, s.maxHead, isHead)
		if errors.Is(err, wire.FaultTooLarge) {
			if big := s.grow(nbr, &x.nr); big != nil {
				nbr, x.nbr = big, big
				rfr, err = wire.ReadResponseHead(nbr, x.resp, s.maxHead, isHead)
			}
		}
		if err != nil {
			pc.Close()
			if staleConn(pc, err, sentBody) && nbr.Buffered() == 0 {
				return false, true
			}
			return x.nodeFailed(pc, err, true), false
		}
		code := x.resp.StatusCode()
		if code >= 200 || code == 101 {
			x.node.Stats.Head.Observe(time.Since(asked))
			break
		}
		// 1xx interim answers (103 Early Hints) pass through; 100 Continue
		// was already sent by tether itself.
		if code != 100 {
			x.head = appendResponseHead(x.head[:0], x.resp)
			x.bw.Write(x.head)
			x.bw.Flush()
		}
	}

	status := x.resp.StatusCode()
	if status == 101 {
		// Only a 101 that completes the client's handshake makes the two
		// connections a tunnel (RFC 6455 section 4.2.2); anything else
		// ends both, and no byte the client sent after its head reaches
		// the node.
		err := errNoUpgrade
		if upgrade {
			err = x.checkSwitch()
		}
		if err != nil {
			pc.Close()
			return x.nodeFailed(pc, err, true), false
		}
		return x.upgrade(pc, nbr, status), false
	}
	keepNode := x.prepareResponse(&rfr)
	if !rfr.NoBody && rfr.Length < 0 && !rfr.Chunked || s.draining.Load() {
		keep = false // delimited by close, or tether is shutting down
	}
	if !keep {
		x.resp.SetBytesKV(strConnection, strClose)
	} else if !bytes.Equal(x.req.Protocol(), strHTTP11) {
		x.resp.SetBytesKV(strConnection, strKeepAliveTok)
	}
	x.head = appendResponseHead(x.head[:0], x.resp)
	x.bw.Write(x.head)
	x.bytesOut = int64(len(x.head))
	x.nr.SetReadTimeout(s.cfg().BodyTimeout)
	var n int64
	if !rfr.NoBody {
		bufp := s.bufs.Get().(*[]byte)
		n, err = wire.CopyBody(x.bw, nbr, rfr, *bufp, false)
		s.bufs.Put(bufp)
		x.bytesOut += n
	}
	if err == nil {
		err = x.bw.Flush()
	}
	x.node.Served.Add(1)
	if err != nil {
		pc.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, wire.ErrBadResponse) {
			s.errLog.Warn().Str("node", x.node.Name).Err(err).Msg("answer body cut short")
		}
		s.record(x, status, err)
		return false, false
	}
	if keepNode && nbr.Buffered() == 0 && !rfr.CloseAfter && (rfr.NoBody || rfr.Chunked || rfr.Length >= 0) {
		pc.Put()
	} else {
		pc.Close()
	}
	s.record(x, status, nil)
	return keep, false
}

// putNodeReader gives back the node reader of an exchange.
func (x *exchange) putNodeReader() {
	if x.nbr != nil {
		x.s.putReader(x.nbr)
		x.nbr = nil
	}
}

// maxInterim bounds the 1xx answers relayed before a final one.
const maxInterim = 8

// testHookSendEarly, set by tests only, sees the node conn a request head
// is about to go out on inside the answer's first read.
var testHookSendEarly func(net.Conn)

// isTimeout reports a deadline that passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errClientBody marks a failure to read the request body from the client.
var errClientBody = errors.New("proxy: request body")

// errClientGone ends an exchange whose client hung up while the node had
// not begun to answer; it is logged with statusClientGone (nginx's 499) and
// nothing is written.
var errClientGone = errors.New("proxy: client closed the connection before the answer")

// statusClientGone is the access log's status for errClientGone.
const statusClientGone = 499

// awaitAnswer waits, under pc's read deadline, until the node's answer
// begins. It runs for answers slower than the hot window (long polls):
// meanwhile a goroutine watches the client, and a client that hangs up (or
// whose connection Shutdown closed) ends the wait with errClientGone, so the
// node connection is closed at once instead of when the node answers (as
// nginx does; HAProxy only with option abortonclose). A client whose next
// request is already buffered is not watched. The watcher has ended when
// awaitAnswer returns. Its stop signal is a past read deadline on the
// client, which stays: every later read of the client is preceded by
// setReadLimit (serveBurst) or, for a sliding deadline, re-arms it
// (readSet is cleared here).
func (x *exchange) awaitAnswer(pc *pool.Conn, until time.Time) error {
	if x.br != nil {
		// The client's next bytes are already here: it is not leaving.
		return sockio.WaitReadable(pc.Conn)
	}
	client := x.c.c
	if err := client.SetReadDeadline(until); err != nil {
		return sockio.WaitReadable(pc.Conn)
	}
	var gone atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A hang-up, or the client's connection closed under it (Shutdown
		// past its time): either way no answer can reach the client.
		if hup, err := sockio.WaitHangup(client); hup || errors.Is(err, net.ErrClosed) {
			gone.Store(true)
			pc.Conn.SetReadDeadline(time.Unix(1, 0)) // wake the wait below
		}
	}()
	err := sockio.WaitReadable(pc.Conn)
	client.SetReadDeadline(time.Unix(1, 0)) // end the watch
	<-done
	x.cr.RearmRead() // the sliding read deadline is set again on the next read
	if gone.Load() {
		return errClientGone
	}
	return err
}

// sendRequest writes the request head and streams its body to the node.
// sentBody reports whether any body byte went out (the request can no
// longer be retried elsewhere).
func (x *exchange) sendRequest(nbw *bufio.Writer, fr wire.Framing) (sentBody bool, err error) {
	x.head = x.req.AppendBytes(x.head[:0])
	if _, err := nbw.Write(x.head); err != nil {
		return false, err
	}
	if !fr.Chunked && fr.Length <= 0 {
		return false, nbw.Flush()
	}
	if x.expect {
		x.bw.Write(strContinue)
		if err := x.bw.Flush(); err != nil {
			return false, fmt.Errorf("%w: %w", errClientBody, err)
		}
	}
	cfg := x.s.cfg()
	x.cr.SetBodyRate(cfg.BodyTimeout, cfg.BodyTimeout, cfg.BodyMinRate)
	fr.Limit = cfg.MaxBodyBytes
	bufp := x.s.bufs.Get().(*[]byte)
	n, err := wire.CopyBody(nbw, x.br, fr, *bufp, true)
	x.s.bufs.Put(bufp)
	x.bytesIn = n
	if err == nil {
		err = nbw.Flush()
	}
	if err != nil {
		if errors.Is(err, wire.ErrBadRequest) || errors.Is(err, wire.ErrBodyTooLarge) || isClientSide(err, &x.cr) {
			return true, fmt.Errorf("%w: %w", errClientBody, err)
		}
		return true, err
	}
	return true, nil
}

// refuseBody answers 413 to a request whose body passes --max-body-bytes;
// the connection then closes lingering (lingerClose), so the answer is not
// lost to a reset.
func (x *exchange) refuseBody(err error) {
	x.writeError(413, err)
	x.s.record(x, 413, err)
}

// isClientSide guesses whether a body copy failed on the client's side:
// the client conn's read failed (the error is not from a write to the node).
func isClientSide(err error, cr *sockio.DeadlineConn) bool {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Op == "read" && oe.Source != nil && cr.Conn != nil && oe.Source.String() == cr.Conn.LocalAddr().String()
	}
	return errors.Is(err, io.ErrUnexpectedEOF)
}

// staleConn reports whether a failure on pc before any answer byte is a
// reused connection the node had closed: the request is routed and sent
// again, as nothing of it was sent (sentBody false) or can have been
// processed. A connection closed by its node's eviction is not stale: that
// request ends at once (nodeFailed).
func staleConn(pc *pool.Conn, err error, sentBody bool) bool {
	return pc.Reused && !sentBody && sockio.PeerGone(err) && !pc.Evicted()
}

// nodeFailed answers the client after a failure talking to the node: 502
// at once when the node's eviction (it went down) closed the connection,
// 504 when the node did not answer in time, 502 otherwise. A reset or
// refusal on a new connection marks the node failing. It reports false: the
// client connection closes.
func (x *exchange) nodeFailed(pc *pool.Conn, err error, readingHead bool) bool {
	status := 502
	var ne net.Error
	switch {
	case pc.Evicted():
		err = fmt.Errorf("%w: %w", pool.ErrNodeDown, err)
	case errors.As(err, &ne) && ne.Timeout():
		status = 504
	case !pc.Reused && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED)):
		pc.Node.Fail(err)
	}
	err = fmt.Errorf("node %s: %w", pc.Node.Name, err)
	x.writeError(status, err)
	x.s.record(x, status, err)
	return false
}

// prepareRequest turns the client's head into the node's: hop-by-hop
// headers out (RFC 9110 §7.6.1), forwarding headers in, and for an upgrade
// the Connection and Upgrade headers the node needs.
func (x *exchange) prepareRequest(upgrade bool) {
	h := x.req
	x.expect = false
	if v := h.PeekBytes(strExpect); len(v) > 0 && bytes.EqualFold(trimOWS(v), str100Continue) {
		x.expect = true
	}
	x.deleteConnectionListed(h.PeekAll("Connection"))
	for _, k := range hopHeaders {
		h.DelBytes(k)
	}
	h.DelBytes(strUpgrade)
	h.DelBytes(strExpect)

	// X-Forwarded-For: the client's list, then the client's address.
	x.xff = x.xff[:0]
	for _, v := range h.PeekAll("X-Forwarded-For") {
		if len(x.xff) > 0 {
			x.xff = append(x.xff, ", "...)
		}
		x.xff = append(x.xff, v...)
	}
	if len(x.xff) > 0 {
		x.xff = append(x.xff, ", "...)
	}
	x.xff = append(x.xff, x.c.remoteIP...)
	h.SetBytesKV(strXFF, x.xff)
	if x.c.secure {
		h.SetBytesKV(strXFProto, strHTTPS)
	} else {
		h.SetBytesKV(strXFProto, strHTTP)
	}
	if host := h.PeekBytes(strHost); len(host) > 0 {
		h.SetBytesKV(strXFHost, host)
	} else {
		h.DelBytes(strXFHost)
	}
	h.SetBytesK(strXRealIP, x.c.remoteIP)
	if upgrade {
		// WebSocket alone: the node must not switch to another protocol
		// the client listed.
		h.SetBytesKV(strConnection, strUpgradeTok)
		h.SetBytesKV(strUpgrade, strWebSocket)
	}
	// The protocol version stays the client's: a node answers an HTTP/1.0
	// request with a body an HTTP/1.0 client can read (never chunked).
}

// hopHeaders are removed from every forwarded message (RFC 9110 §7.6.1);
// Transfer-Encoding and Content-Length framing is re-emitted by tether.
var hopHeaders = [][]byte{strConnection, strKeepAlive, strProxyConnection, strProxyAuthz, strProxyAuthn, strTE, strTrailer}

// deleteConnectionListed deletes the headers named in Connection values
// (the connection-specific options of RFC 9110 §7.6.1).
func (x *exchange) deleteConnectionListed(values [][]byte) {
	x.connTok = x.connTok[:0]
	for _, v := range values {
		for len(v) > 0 {
			var tok []byte
			if tok, v = wire.NextElement(v); len(tok) > 0 {
				x.connTok = append(x.connTok, tok)
			}
		}
	}
	for _, tok := range x.connTok {
		if bytes.EqualFold(tok, strClose) || bytes.EqualFold(tok, strKeepAliveTok) || bytes.EqualFold(tok, strUpgradeTok) {
			continue
		}
		x.req.DelBytes(tok)
	}
}

// prepareResponse removes hop-by-hop headers from the node's answer and
// reports whether the node connection can be reused.
func (x *exchange) prepareResponse(fr *wire.Framing) (keepNode bool) {
	h := x.resp
	keepNode = !h.ConnectionClose() && !hasToken(h.PeekAll("Connection"), strClose) &&
		bytes.Equal(h.Protocol(), strHTTP11)
	for _, v := range h.PeekAll("Connection") {
		for len(v) > 0 {
			var tok []byte
			if tok, v = wire.NextElement(v); len(tok) > 0 && !bytes.EqualFold(tok, strClose) && !bytes.EqualFold(tok, strKeepAliveTok) {
				h.DelBytes(tok)
			}
		}
	}
	h.DelBytes(strConnection)
	h.DelBytes(strKeepAlive)
	h.DelBytes(strProxyConnection)
	h.DelBytes(strUpgrade)
	h.DelBytes(strTE)
	if fr.Chunked && !fr.NoBody {
		h.DelBytes(strContentLength)
		h.SetBytesKV(strTransferEnc, strChunked)
	}
	return keepNode
}

// hasToken reports whether any of the comma-separated values holds tok.
func hasToken(values [][]byte, tok []byte) bool {
	for _, v := range values {
		for len(v) > 0 {
			var t []byte
			if t, v = wire.NextElement(v); bytes.EqualFold(t, tok) {
				return true
			}
		}
	}
	return false
}

// clientKeepAlive reports whether the client wants its connection kept:
// HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with "keep-alive".
func clientKeepAlive(h *fasthttp.RequestHeader) bool {
	conn := h.PeekAll("Connection")
	if bytes.Equal(h.Protocol(), strHTTP11) {
		return !hasToken(conn, strClose)
	}
	return hasToken(conn, strKeepAliveTok)
}

// appendResponseHead serializes an answer head as the node sent it, less
// what prepareResponse removed: status line, then every header line.
func appendResponseHead(dst []byte, h *fasthttp.ResponseHeader) []byte {
	dst = append(dst, strHTTP11...)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(h.StatusCode()), 10)
	dst = append(dst, ' ')
	msg := h.StatusMessage()
	if len(msg) == 0 {
		msg = []byte(fasthttp.StatusMessage(h.StatusCode()))
	}
	dst = append(dst, msg...)
	dst = append(dst, strCRLF...)
	for k, v := range h.All() {
		dst = append(dst, k...)
		dst = append(dst, strColonSpace...)
		dst = append(dst, v...)
		dst = append(dst, strCRLF...)
	}
	return append(dst, strCRLF...)
}

// errorResponses holds tether's own short answers, built once.
var errorResponses = map[int][]byte{}

func init() {
	for code, text := range map[int]string{
		400: "bad request",
		408: "request head timed out",
		413: "request body too large",
		431: "request head too large",
		502: "bad gateway: the node failed or sent an invalid answer",
		503: "service unavailable: no healthy node",
		504: "gateway timeout: the node did not answer in time",
	} {
		body := "tether: " + text + "\n"
		head := "HTTP/1.1 " + strconv.Itoa(code) + " " + fasthttp.StatusMessage(code) + "\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
			"Connection: close\r\n"
		if code == 503 {
			head += "Retry-After: 2\r\n"
		}
		errorResponses[code] = []byte(head + "\r\n" + body)
	}
}

// errorResponse returns tether's answer for status.
func errorResponse(status int) []byte {
	if b, ok := errorResponses[status]; ok {
		return b
	}
	return errorResponses[502]
}
