package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

// sessionWorker is one session of the cobrowse (ws) or ws-echo scenario: a
// plain GET for the sticky cookie, then a customer and an agent WebSocket
// carrying it (the customer's messages are relayed to the agent), or one
// echo WebSocket. A session that fails or ends starts anew.
type sessionWorker struct {
	run    *run
	id     int
	stats  *workerStats
	echo   bool // ws-echo: one echo WebSocket instead of customer and agent
	hc     *fasthttp.HostClient
	dialer *websocket.Dialer
	msgs   *streamer
}

func (w *sessionWorker) loop() {
	r := w.run
	w.hc = r.tgt.hostClient(r.cfg.Timeout)
	defer w.hc.CloseIdleConnections()
	w.dialer = r.tgt.wsDialer(r.cfg.Timeout, 16<<10, nil)
	w.msgs = r.newStreamer(w.id, r.cfg.Sessions, w.stats, opWS, "ws")
	r.sessions(w.session)
}

// session runs one session until the run ends (true) or it fails (false).
// A session ended by a 409 is not a failure of the run: stickiness counts it.
func (w *sessionWorker) session(attempt int) bool {
	r := w.run
	id := r.streamID(w.id, attempt)
	if !w.page() {
		return false
	}
	if w.echo {
		c := w.dial(id, "echo")
		if c == nil {
			return false
		}
		defer w.hangUp(c)
		return w.msgs.drive(wsStream{out: c, in: c}, w.opened())
	}
	cust := w.dial(id, "customer")
	if cust == nil {
		return false
	}
	agent := w.dial(id, "agent")
	if agent == nil {
		w.hangUp(cust)
		return false
	}
	p := newPairStream(cust, agent)
	defer p.hangUp(r.hardEnd)
	return w.msgs.drive(p, w.opened())
}

// opened counts a session whose WebSockets opened, on its node.
func (w *sessionWorker) opened() *NodeReport {
	nr := w.stats.node(w.stats.sticky.node)
	nr.WSSessions++
	return nr
}

// page GETs / as a browser loads the co-browse page, for the cookie.
func (w *sessionWorker) page() bool {
	return getPage(w.run, w.hc, w.stats)
}

// getPage GETs / with the session's cookie (none at first) and observes the
// answer; it reports whether the session may go on (200).
func getPage(r *run, hc *fasthttp.HostClient, stats *workerStats) bool {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(r.tgt.url("/"))
	if c := stats.sticky.cookie; c != "" {
		req.Header.SetCookie(r.cfg.Cookie, c)
	}
	if err := hc.DoDeadline(req, resp, r.deadline()); err != nil {
		if r.ctx.Err() == nil {
			stats.fail(errKind("http", err))
		}
		return false
	}
	status := resp.StatusCode()
	stats.observe(status, string(resp.Header.Peek(HeaderNode)), setCookieOf(&resp.Header, r.cfg.Cookie))
	switch status {
	case fasthttp.StatusOK:
		return true
	case fasthttp.StatusConflict:
		return false
	}
	stats.fail("http_status_" + strconv.Itoa(status))
	return false
}

// setCookieOf is the value of the cookie named name that h sets; "" if none.
func setCookieOf(h *fasthttp.ResponseHeader, name string) string {
	var ck fasthttp.Cookie
	ck.SetKey(name)
	if h.Cookie(&ck) {
		return string(ck.Value())
	}
	return ""
}

// dial opens the WebSocket of role in session id; nil if it failed or the
// node refused the session (409).
func (w *sessionWorker) dial(id, role string) *websocket.Conn {
	r := w.run
	h := http.Header{}
	if c := w.stats.sticky.cookie; c != "" {
		h.Set("Cookie", r.cfg.Cookie+"="+c)
	}
	ctx, cancel := context.WithDeadline(r.ctx, r.deadline())
	defer cancel()
	c, resp, err := w.dialer.DialContext(ctx, r.tgt.wsURL(PathWS+"?session="+id+"&role="+role), h)
	if resp != nil {
		setCookie := ""
		for _, ck := range resp.Cookies() {
			if ck.Name == r.cfg.Cookie {
				setCookie = ck.Value
			}
		}
		w.stats.observe(resp.StatusCode, resp.Header.Get(HeaderNode), setCookie)
	}
	if err != nil {
		switch {
		case r.ctx.Err() != nil:
		case resp != nil && resp.StatusCode == http.StatusConflict:
		case resp != nil:
			w.stats.fail("ws_status_" + strconv.Itoa(resp.StatusCode))
		default:
			w.stats.fail(errKind("ws_dial", err))
		}
		return nil
	}
	c.SetReadLimit(MaxMessageBytes)
	if tc, ok := c.NetConn().(*tls.Conn); ok && w.stats.tls == nil {
		w.stats.tls = tlsInfo(tc.ConnectionState())
	}
	return c
}

// hangUp closes c with a Close frame and waits briefly for the answer.
func (w *sessionWorker) hangUp(c *websocket.Conn) { hangUp(c, w.run.hardEnd) }

// wsStream is a stream over WebSockets: messages written on out arrive on
// in (the same connection for an echo).
type wsStream struct {
	out, in *websocket.Conn
}

var _ stream = wsStream{}

// errMessageType is a message that is not binary.
var errMessageType = errors.New("bench: not a binary message")

func (s wsStream) send(msg []byte, deadline time.Time) error {
	_ = s.out.SetWriteDeadline(deadline)
	return s.out.WriteMessage(websocket.BinaryMessage, msg)
}

func (s wsStream) recv(deadline time.Time) ([]byte, error) {
	_ = s.in.SetReadDeadline(deadline)
	kind, data, err := s.in.ReadMessage()
	if err == nil && kind != websocket.BinaryMessage {
		err = errMessageType
	}
	return data, err
}

func (s wsStream) abort() {
	_ = s.out.NetConn().Close()
	_ = s.in.NetConn().Close()
}

func (s wsStream) lockstep() bool { return true }

// hangUp closes c with a Close frame and waits for the answer, at most a
// second and not past hardEnd.
func hangUp(c *websocket.Conn, hardEnd time.Time) {
	deadline := time.Now().Add(time.Second)
	if deadline.After(hardEnd) {
		deadline = hardEnd
	}
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if err := c.WriteControl(websocket.CloseMessage, msg, deadline); err == nil {
		_ = c.SetReadDeadline(deadline)
		for range 64 {
			if _, _, err := c.ReadMessage(); err != nil {
				break
			}
		}
	}
	_ = c.Close()
}
