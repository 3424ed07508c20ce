package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/http"
	"strconv"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

// sessionWorker is one co-browse session of the ws scenario: a plain GET
// for the sticky cookie, then a customer and an agent WebSocket carrying
// it; the customer sends messages stamped with their send time, the agent
// receives them (one in flight). A session that fails or ends starts anew.
type sessionWorker struct {
	run    *run
	id     int
	stats  *workerStats
	hc     *fasthttp.HostClient
	dialer *websocket.Dialer
}

func (w *sessionWorker) loop() {
	r := w.run
	w.hc = newHostClient(r)
	defer w.hc.CloseIdleConnections()
	w.dialer = &websocket.Dialer{
		HandshakeTimeout: r.cfg.Timeout,
		ReadBufferSize:   16 << 10,
		WriteBufferSize:  16 << 10,
	}
	for attempt := 0; r.running(); attempt++ {
		if !w.session(attempt) {
			r.pause()
		}
	}
}

// session runs one session until the run ends (true) or it fails (false).
// A session ended by a 409 is not a failure of the run: stickiness counts it.
func (w *sessionWorker) session(attempt int) bool {
	r := w.run
	id := r.prefix + "-" + strconv.Itoa(w.id) + "-" + strconv.Itoa(attempt)
	if !w.page() {
		return false
	}
	cust := w.dial(id, "customer")
	if cust == nil {
		return false
	}
	defer w.hangUp(cust)
	agent := w.dial(id, "agent")
	if agent == nil {
		return false
	}
	defer w.hangUp(agent)
	w.stats.node(w.stats.sticky.node).WSSessions++
	return w.relay(cust, agent)
}

// page GETs / as a browser loads the co-browse page, for the cookie.
func (w *sessionWorker) page() bool {
	r := w.run
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + r.addr + "/")
	if c := w.stats.sticky.cookie; c != "" {
		req.Header.SetCookie(r.cfg.Cookie, c)
	}
	if err := w.hc.DoDeadline(req, resp, r.deadline()); err != nil {
		if r.ctx.Err() == nil {
			w.stats.fail(errKind("http", err))
		}
		return false
	}
	var ck fasthttp.Cookie
	ck.SetKey(r.cfg.Cookie)
	setCookie := ""
	if resp.Header.Cookie(&ck) {
		setCookie = string(ck.Value())
	}
	status := resp.StatusCode()
	w.stats.observe(status, string(resp.Header.Peek(HeaderNode)), setCookie)
	switch status {
	case fasthttp.StatusOK:
		return true
	case fasthttp.StatusConflict:
		return false
	}
	w.stats.fail("http_status_" + strconv.Itoa(status))
	return false
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
	u := "ws://" + r.addr + PathWS + "?session=" + id + "&role=" + role
	c, resp, err := w.dialer.DialContext(ctx, u, h)
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
	return c
}

// relay sends messages customer → agent, one in flight, until the run
// ends. Each carries its send time (since the run started, monotonic) and
// its sequence number, then pattern bytes.
func (w *sessionWorker) relay(cust, agent *websocket.Conn) bool {
	r := w.run
	node := w.stats.node(w.stats.sticky.node)
	msg := make([]byte, r.cfg.MessageBytes)
	Pattern(msg[minMessageBytes:], minMessageBytes)
	for seq := uint64(0); r.running(); seq++ {
		binary.BigEndian.PutUint64(msg[0:], uint64(time.Since(r.start)))
		binary.BigEndian.PutUint64(msg[8:], seq)
		_ = cust.SetWriteDeadline(r.deadline())
		if err := cust.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			w.failOp("ws_write", err)
			return false
		}
		_ = agent.SetReadDeadline(r.deadline())
		kind, data, err := agent.ReadMessage()
		if err != nil {
			w.failOp("ws_read", err)
			return false
		}
		now := time.Since(r.start)
		if kind != websocket.BinaryMessage || len(data) != len(msg) ||
			binary.BigEndian.Uint64(data[8:]) != seq || !bytes.Equal(data[minMessageBytes:], msg[minMessageBytes:]) {
			w.stats.fail("ws_payload")
			return false
		}
		r.wsLat.record(w.id, now-time.Duration(binary.BigEndian.Uint64(data)))
		w.stats.wsOps++
		w.stats.wsBytes += int64(len(data))
		node.WSMessages++
	}
	return true
}

func (w *sessionWorker) failOp(op string, err error) {
	if w.run.ctx.Err() == nil {
		w.stats.fail(errKind(op, err))
	}
}

// hangUp closes c with a Close frame and waits briefly for the answer.
func (w *sessionWorker) hangUp(c *websocket.Conn) { hangUp(c, w.run.hardEnd) }

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
