package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/route"
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
	conn *conn
	req  *fasthttp.RequestHeader
	ans  wire.AnswerHead // the node's answer head, as checked

	cr   sockio.DeadlineConn // the client connection, with deadlines
	cold sockio.ColdConn     // a cold client connection's socket, served as it is (httploop.go)
	nr   sockio.DeadlineConn // the node connection, with deadlines
	br   *bufio.Reader       // client reader; nil once released mid-request
	bw   *bufio.Writer       // client writer
	nbr  *bufio.Reader       // node reader, while an answer is read

	head  []byte        // serialized head scratch
	param [256]byte     // percent-decoded stickiness parameter
	nh    wire.NodeHead // the client's head made the node's

	// per request (begin resets them)
	node     *pool.Node
	why      route.Reason
	start    time.Time
	bytesIn  int64 // request body bytes
	bytesOut int64 // answer bytes written to the client
	upgraded bool
	lazy     bool                   // the client is on the http loops: deadlines only before waits (sockio.DeadlineConn.SetLazy)
	accept   [wire.WSAcceptLen]byte // with an upgrade: the Sec-WebSocket-Accept its 101 must carry
	asked    time.Time              // when the request went to the node (awaitHead)
	rfr      wire.Framing           // the node's answer (readFinalHead)
	pending  *spliced               // a 101 was relayed: splice once the exchange is released
	session  *splice.Session        // with pending: what the splice engine gets
}

func newExchange(s *Server) *exchange {
	return &exchange{s: s, req: newFastHeaders(), head: make([]byte, 0, 1024)}
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
	x.cr.Conn, x.nr.Conn, x.conn, x.node = nil, nil, nil, nil
	x.cr.Raw.Set(nil, nil)
	x.cold.Reset()
	x.nr.Raw.Set(nil, nil)
}

var (
	strContinue = []byte("HTTP/1.1 100 Continue\r\n\r\n")
)

// handle routes one request, forwards it and relays the answer (or splices
// an upgraded connection). It reports whether the client connection can
// carry another request.
func (s *Server) handle(x *exchange, fr wire.Framing) bool {
	t := s.pool.Table()
	node, why := s.router.Load().Route(t, x.req, x.param[:])
	x.why = why
	upgrade := fr.Upgrade
	if upgrade {
		wire.WSAccept(&x.accept, x.req.PeekBytes(strWSKey))
		if err := x.warmClient(); err != nil {
			s.record(x, statusClientGone, err)
			return false
		}
	}
	keep := wire.KeepAliveFields(x.req, fr.Fields) && !upgrade && !s.closesAfterAnswer()
	x.nh.Prepare(x.req, fr.Fields)
	if limit := s.cfg().MaxBodyBytes; limit > 0 && !fr.Chunked && fr.Length > limit {
		x.refuseBody(fmt.Errorf("%w: Content-Length %d, --max-body-bytes %d", wire.ErrBodyTooLarge, fr.Length, limit))
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
				node, x.why = s.pool.Table().Pick(tried), route.Failover
				continue
			}
			x.writeError(503, err)
			s.record(x, 503, err)
			return false
		}
		lease := node.Acquire()
		out := x.exchangeWith(pc, fr, upgrade, keep)
		lease.Release()
		if out == retry {
			if attempt <= len(t.Nodes()) {
				// A reused connection the node had closed: route again, as
				// the node may have gone down or been replaced meanwhile (a
				// node that is down is never dialled); the same node gets a
				// new connection.
				prev := node
				t = s.pool.Table()
				node, x.why = s.router.Load().Route(t, x.req, x.param[:])
				fresh = node == prev
				continue
			}
			err := fmt.Errorf("node %s: pooled connections failed %d times", node.Name, attempt+1)
			x.writeError(502, err)
			s.record(x, 502, err)
			return false
		}
		return out == answered
	}
}

// outcome is how one attempt to exchange a request with a node ended.
type outcome uint8

const (
	// answered: the answer went out whole; the client connection carries
	// the next request if keep-alive allows it.
	answered outcome = iota
	// closeClient: the exchange is over (answered with a close, refused, or
	// failed and answered with an error status); the client connection
	// closes.
	closeClient
	// retry: the pooled connection the node had closed failed before any
	// of the request could count; handle routes the request again.
	retry
)

// exchangeWith sends the request on pc and relays the answer, in steps:
// send the head and the body, wait for the answer's head, read it past any
// interim answers, then either switch protocols (a 101) or relay the
// answer and its body. Each step that fails ends the attempt through
// clientBodyFailed or nodeError.
func (x *exchange) exchangeWith(pc *pool.Conn, fr wire.Framing, upgrade, keep bool) outcome {
	s := x.s
	x.nr.Reset(pc.Conn, pc.Raw, s.cfg().UpstreamTimeout, s.cfg().WriteTimeout)
	x.nr.KnownReadDeadline(pc.ReadDeadline) // its hot window may stay (relayAnswer keeps it)
	if x.lazy {
		x.nr.SetLazy()
	}
	early, sentBody, err := x.send(pc, fr)
	if err != nil {
		if errors.Is(err, errClientBody) {
			pc.Close()
			x.clientBodyFailed(err)
			return closeClient
		}
		return x.nodeError(pc, err, !sentBody)
	}
	if out, ok := x.awaitHead(pc, early, sentBody); !ok {
		return out
	}
	defer x.putNodeReader()
	if out, ok := x.readFinalHead(pc, sentBody); !ok {
		return out
	}
	if x.ans.Status() == 101 {
		return x.switchProtocols(pc, upgrade)
	}
	return x.relayAnswer(pc, keep)
}

// send writes the request to the node. A request without a body goes out
// inside the first read of its answer (sendBeforeRead, early): one write,
// then the wait, and no read that finds nothing. Others are written first,
// their bodies streamed. sentBody reports whether any body byte went out
// (the request can no longer be sent again).
func (x *exchange) send(pc *pool.Conn, fr wire.Framing) (early, sentBody bool, err error) {
	if !fr.Chunked && fr.Length <= 0 && x.nr.Raw.Use() {
		x.head = x.nh.Append(x.head[:0], x.req, x.conn.remoteIP, x.conn.secure, fr.Upgrade)
		x.nr.Raw.SendBeforeRead(x.head)
		if h := testHookSendEarly; h != nil {
			h(pc.Conn)
		}
		return true, false, nil
	}
	nbw := x.s.getWriter(&x.nr)
	sentBody, err = x.sendRequest(nbw, fr)
	x.s.putWriter(nbw)
	return false, sentBody, err
}

// clientBodyFailed answers a request whose body the client sent badly
// (400, 413) or stopped sending (408); a client that is gone gets nothing.
func (x *exchange) clientBodyFailed(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, wire.ErrBodyTooLarge):
		x.refuseBody(err)
	case errors.Is(err, wire.ErrBadRequest):
		x.writeError(400, err)
		x.s.record(x, 400, err)
	case errors.As(err, &ne) && ne.Timeout():
		x.writeError(408, err)
		x.s.record(x, 408, err)
	default:
		x.s.record(x, 400, err)
	}
}

// awaitHead waits for the first byte of the node's answer and leaves the
// node reader holding it in x.nbr. Most answers start within a few
// milliseconds: the first wait holds the reader (one read). A slower one (a
// long poll may take minutes) is waited for holding no buffer at all, the
// client's reader included if the client sent nothing more. ok is false when
// the attempt ended (out).
func (x *exchange) awaitHead(pc *pool.Conn, early, sentBody bool) (out outcome, ok bool) {
	s := x.s
	nbr := s.getReader(&x.nr)
	asked := time.Now()
	x.nr.SetReadLimitFrom(asked, sockio.HotWindow)
	_, err := nbr.Peek(1)
	if rest := x.nr.Raw.Unsent(); early && rest != nil {
		// The head did not all go out with the read (a full socket buffer,
		// or the read ended before trying): write the rest, then wait. A
		// failed write is the request's, never a wait for an answer.
		if _, err := x.nr.Write(rest); err != nil {
			s.putReader(nbr)
			return x.nodeError(pc, err, true), false
		}
		x.nr.SetReadLimit(sockio.HotWindow)
		_, err = nbr.Peek(1)
	}
	if err != nil {
		s.putReader(nbr)
		if !sockio.IsTimeout(err) {
			return x.nodeError(pc, err, !sentBody), false
		}
		if x.br != nil && x.br.Buffered() == 0 {
			s.putReader(x.br)
			x.br = nil
		}
		until := asked.Add(s.cfg().UpstreamTimeout)
		pc.SetReadDeadline(until)
		if err := x.awaitAnswer(pc, until); err != nil {
			if err == errClientGone {
				pc.Close()
				s.record(x, statusClientGone, err)
				return closeClient, false
			}
			return x.nodeError(pc, err, false), false
		}
		x.nr.RearmRead() // the wait set the node's read deadline itself
		nbr = s.getReader(&x.nr)
	}
	x.nbr = nbr
	x.asked = asked
	return answered, true
}

// readFinalHead reads the node's answer head into x.ans, relaying 1xx
// interim answers (103 Early Hints) to the client; 100 Continue was already
// sent by tether itself. x.rfr gets the answer's framing; the final head
// stays in x.nbr for relayAnswer or upgrade to relay. ok is false when the
// attempt ended (out).
func (x *exchange) readFinalHead(pc *pool.Conn, sentBody bool) (out outcome, ok bool) {
	s := x.s
	x.nr.SetReadTimeout(s.cfg().UpstreamTimeout)
	isHead := x.req.IsHead()
	for interim := 0; ; interim++ {
		if interim > maxInterim {
			return x.nodeError(pc, fmt.Errorf("%w: more than %d interim answers", wire.ErrBadResponse, maxInterim), false), false
		}
		rfr, err := wire.ReadResponseHead(x.nbr, &x.ans, s.maxHead, isHead)
		if errors.Is(err, wire.FaultTooLarge) {
			if big := s.grow(x.nbr, &x.nr); big != nil {
				x.nbr = big
				rfr, err = wire.ReadResponseHead(x.nbr, &x.ans, s.maxHead, isHead)
			}
		}
		if err != nil {
			return x.nodeError(pc, err, !sentBody && x.nbr.Buffered() == 0), false
		}
		code := x.ans.Status()
		if code >= 200 || code == 101 {
			x.node.Stats.Head.Observe(time.Since(x.asked))
			x.rfr = rfr
			return answered, true
		}
		if code == 100 {
			x.ans.Skip(x.nbr)
			continue
		}
		x.head = x.ans.Relay(x.head[:0], x.nbr, wire.ConnNone)
		x.bw.Write(x.head)
		x.bw.Flush()
	}
}

// switchProtocols handles a 101. Only one that completes the client's
// handshake makes the two connections a tunnel (RFC 6455 section 4.2.2);
// anything else ends both, and no byte the client sent after its head
// reaches the node.
func (x *exchange) switchProtocols(pc *pool.Conn, upgrade bool) outcome {
	err := errNoUpgrade
	if upgrade {
		err = x.checkSwitch()
	}
	if err != nil {
		return x.nodeError(pc, err, false)
	}
	x.upgrade(pc, x.nbr, 101)
	return closeClient
}

// relayAnswer writes the answer head and streams its body to the client,
// then gives pc back to its pool when the node can carry another request.
func (x *exchange) relayAnswer(pc *pool.Conn, keep bool) outcome {
	s := x.s
	rfr, nbr := x.rfr, x.nbr
	status := x.ans.Status()
	// The node connection carries another request after an HTTP/1.1 answer
	// that does not close it.
	keepNode := !x.ans.HTTP10()
	if !rfr.NoBody && rfr.Length < 0 && !rfr.Chunked || s.closesAfterAnswer() {
		keep = false // delimited by close, or this process is ending (drain, hand-over)
	}
	conn := wire.ConnNone
	if !keep {
		conn = wire.ConnClose
	} else if !wire.IsHTTP11(x.req) {
		conn = wire.ConnKeepAlive
	}
	x.head = x.ans.Relay(x.head[:0], nbr, conn)
	x.bw.Write(x.head)
	x.bytesOut = int64(len(x.head))
	x.nr.SetReadTimeout(s.cfg().BodyTimeout)
	var err error
	if !rfr.NoBody {
		bufp := s.bufs.Get().(*[]byte)
		var n int64
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
		return closeClient
	}
	if keepNode && nbr.Buffered() == 0 && !rfr.CloseAfter && (rfr.NoBody || rfr.Chunked || rfr.Length >= 0) {
		pc.ReadDeadline = x.nr.ReadDeadlineOn()
		pc.Put()
	} else {
		pc.Close()
	}
	s.record(x, status, nil)
	if keep {
		return answered
	}
	return closeClient
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
// SetReadLimit (serveBurst) or, for a sliding deadline, re-arms it
// (RearmRead here).
func (x *exchange) awaitAnswer(pc *pool.Conn, until time.Time) error {
	if x.br != nil {
		// The client's next bytes are already here: it is not leaving.
		return sockio.WaitReadable(pc.Conn)
	}
	if err := x.warmClient(); err != nil {
		return errClientGone
	}
	client := x.conn.nc
	if err := client.SetReadDeadline(until); err != nil {
		return sockio.WaitReadable(pc.Conn)
	}
	var gone atomic.Bool
	done := make(chan struct{})
	go watchClient(client, pc.Conn, &gone, done)
	err := sockio.WaitReadable(pc.Conn)
	client.SetReadDeadline(time.Unix(1, 0)) // end the watch
	<-done
	x.cr.RearmRead() // the sliding read deadline is set again on the next read
	if gone.Load() {
		return errClientGone
	}
	return err
}

// warmClient makes a cold client connection a net.Conn, for what needs
// one: an upgrade (the splice engine takes it), the watch of a long poll.
// A warm one is left as it is.
func (x *exchange) warmClient() error {
	if !x.conn.lc.cold {
		return nil
	}
	return x.cold.WarmUp()
}

// watchClient is awaitAnswer's watcher: it waits for the client to hang up
// (or for its connection to be closed under it: Shutdown past its time),
// when no answer can reach the client any more; it then sets gone and wakes
// the wait on node with a past read deadline. A past read deadline on
// client (awaitAnswer's) stops it; it closes done as it returns.
func watchClient(client, node net.Conn, gone *atomic.Bool, done chan<- struct{}) {
	defer close(done)
	if hup, err := sockio.WaitHangup(client); hup || errors.Is(err, net.ErrClosed) {
		gone.Store(true)
		node.SetReadDeadline(time.Unix(1, 0))
	}
}

// sendRequest writes the request head and streams its body to the node.
// sentBody reports whether any body byte went out (the request can no
// longer be retried elsewhere).
func (x *exchange) sendRequest(nbw *bufio.Writer, fr wire.Framing) (sentBody bool, err error) {
	x.head = x.nh.Append(x.head[:0], x.req, x.conn.remoteIP, x.conn.secure, fr.Upgrade)
	if _, err := nbw.Write(x.head); err != nil {
		return false, err
	}
	if !fr.Chunked && fr.Length <= 0 {
		return false, nbw.Flush()
	}
	if x.nh.Expect {
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

// nodeError ends an attempt that failed talking to the node on pc, which
// it closes. A reused connection the node had closed, failing before any
// of the request could count (mayRetry: no body byte sent, no answer byte
// read), is retried; a connection closed by its node's eviction never is:
// that request ends at once. Otherwise the client is answered: 502 at once
// when the node's eviction (it went down) closed the connection, 504 when
// the node did not answer in time, 502 otherwise; a reset or refusal on a
// new connection marks the node failing.
func (x *exchange) nodeError(pc *pool.Conn, err error, mayRetry bool) outcome {
	pc.Close()
	if mayRetry && pc.Reused && sockio.PeerGone(err) && !pc.Evicted() {
		return retry
	}
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
	return closeClient
}
