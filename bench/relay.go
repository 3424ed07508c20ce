package bench

import (
	"errors"
	"io"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

// The relay: a co-browse session has a customer and an agent; what one role
// sends (over a WebSocket or POST /cobrowse/send) is queued for the other
// role, which takes it over a WebSocket or a long poll.

// Queue bounds of one role of one session.
const (
	queueMessages = 1024
	queueBytes    = 64 << 20
	// relayWait is how long a WebSocket reader waits for room in the other
	// role's queue before it drops the message: backpressure while the other
	// side drains, no stall when nobody does.
	relayWait = time.Second
	// maxSessions caps the session states a node holds; beyond it new
	// sessions get 503 (HTTP) or Close 1013 (WebSocket).
	maxSessions = 100_000
)

// Roles of /cobrowse/ws, /cobrowse/poll and /cobrowse/send.
const (
	roleCustomer = 0
	roleAgent    = 1
	roleEcho     = 2
)

func parseRole(b []byte) (int, bool) {
	switch string(b) {
	case "customer":
		return roleCustomer, true
	case "agent":
		return roleAgent, true
	case "echo":
		return roleEcho, true
	}
	return 0, false
}

// message is one relayed message, its WebSocket type kept as sent.
type message struct {
	kind int // websocket.TextMessage or websocket.BinaryMessage
	data []byte
}

// mailbox is the bounded FIFO of messages addressed to one role of one
// session. Waiters watch changed, which is closed and replaced on every push
// and pop, so no wakeup is lost whatever the number of waiters.
type mailbox struct {
	mu      sync.Mutex
	msgs    []message     // guarded by mu
	bytes   int           // guarded by mu; sum of len(data) over msgs
	changed chan struct{} // guarded by mu
}

func newMailbox() *mailbox {
	return &mailbox{changed: make(chan struct{})}
}

func (m *mailbox) signalLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// tryPush queues msg if it fits. A message larger than queueBytes fits an
// empty queue. Otherwise it returns the channel of the next change.
func (m *mailbox) tryPush(msg message) (bool, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.msgs) >= queueMessages || (len(m.msgs) > 0 && m.bytes+len(msg.data) > queueBytes) {
		return false, m.changed
	}
	m.msgs = append(m.msgs, msg)
	m.bytes += len(msg.data)
	m.signalLocked()
	return true, nil
}

// tryPop takes the oldest message, or returns the channel of the next change.
func (m *mailbox) tryPop() (message, bool, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.msgs) == 0 {
		return message{}, false, m.changed
	}
	msg := m.msgs[0]
	m.msgs[0] = message{}
	m.msgs = m.msgs[1:]
	if len(m.msgs) == 0 {
		m.msgs = nil
	}
	m.bytes -= len(msg.data)
	m.signalLocked()
	return msg, true, nil
}

func (m *mailbox) empty() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.msgs) == 0
}

// push queues msg, waiting up to wait for room; it gives up early when done
// is closed. It reports whether msg was queued.
func (m *mailbox) push(msg message, wait time.Duration, done <-chan struct{}) bool {
	var timeout <-chan time.Time
	for {
		ok, changed := m.tryPush(msg)
		if ok {
			return true
		}
		if wait <= 0 {
			return false
		}
		if timeout == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-changed:
		case <-timeout:
			return false
		case <-done:
			return false
		}
	}
}

// errPopTimeout and errPopStopped tell why pop returned no message.
var (
	errPopTimeout = errors.New("bench: no message in time")
	errPopStopped = errors.New("bench: stopped")
)

// pop takes the oldest message, waiting up to wait (forever if wait <= 0)
// until done or stop is closed.
func (m *mailbox) pop(wait time.Duration, done, stop <-chan struct{}) (message, error) {
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		msg, ok, changed := m.tryPop()
		if ok {
			return msg, nil
		}
		select {
		case <-changed:
		case <-timeout:
			return message{}, errPopTimeout
		case <-done:
			return message{}, errPopStopped
		case <-stop:
			return message{}, errPopStopped
		}
	}
}

// session is the relay state of one co-browse session on this node.
type session struct {
	id        string
	refs      int         // guarded by sessionTable.mu: WebSockets, polls and sends using it
	idleSince time.Time   // guarded by sessionTable.mu: when refs dropped to 0
	inbox     [2]*mailbox // inbox[role]: messages addressed to role
}

// sessionTable holds the sessions in use, and for idleTTL those that nobody
// uses but that still hold messages (a long-poll client between two polls).
// Lock order: sessionTable.mu before mailbox.mu.
type sessionTable struct {
	mu      sync.Mutex
	m       map[string]*session // guarded by mu
	swept   time.Time           // guarded by mu
	idleTTL time.Duration
}

// sessionIdleTTL is how long an unused session keeps undelivered messages.
func sessionIdleTTL(pollWait time.Duration) time.Duration {
	return max(2*pollWait, 10*time.Second)
}

func (t *sessionTable) init(idleTTL time.Duration) {
	t.m = make(map[string]*session)
	t.idleTTL = idleTTL
}

// acquire returns the session id, created if needed, with one more
// reference; release gives it back. It fails when the table is full.
func (t *sessionTable) acquire(id string) (*session, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if now.Sub(t.swept) > t.idleTTL/2 {
		t.sweepLocked(now)
	}
	s := t.m[id]
	if s == nil {
		if len(t.m) >= maxSessions {
			return nil, false
		}
		s = &session{id: id, inbox: [2]*mailbox{newMailbox(), newMailbox()}}
		t.m[id] = s
	}
	s.refs++
	return s, true
}

func (t *sessionTable) release(s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.refs--
	if s.refs > 0 {
		return
	}
	if s.inbox[roleCustomer].empty() && s.inbox[roleAgent].empty() {
		delete(t.m, s.id)
		return
	}
	s.idleSince = time.Now()
}

// sweepLocked drops sessions unused for longer than idleTTL.
func (t *sessionTable) sweepLocked(now time.Time) {
	t.swept = now
	for id, s := range t.m {
		if s.refs == 0 && now.Sub(s.idleSince) > t.idleTTL {
			delete(t.m, id)
		}
	}
}

func (t *sessionTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// sessionRole reads ?session=ID&role=R; echo is refused unless allowEcho.
func sessionRole(ctx *fasthttp.RequestCtx, allowEcho bool) (string, int, bool) {
	args := ctx.QueryArgs()
	role, ok := parseRole(args.Peek("role"))
	if !ok || (role == roleEcho && !allowEcho) {
		answer(ctx, fasthttp.StatusBadRequest, "want role=customer or role=agent\n")
		return "", 0, false
	}
	id := args.Peek("session")
	if len(id) == 0 && role != roleEcho {
		answer(ctx, fasthttp.StatusBadRequest, "want session=ID\n")
		return "", 0, false
	}
	return string(id), role, true
}

// servePoll answers the next message addressed to the role, or 204 after
// PollWait.
func (n *Node) servePoll(ctx *fasthttp.RequestCtx) {
	id, role, ok := sessionRole(ctx, false)
	if !ok {
		return
	}
	n.stats.polls.Add(1)
	s, ok := n.sessions.acquire(id)
	if !ok {
		answer(ctx, fasthttp.StatusServiceUnavailable, "too many sessions\n")
		return
	}
	defer n.sessions.release(s)
	msg, err := s.inbox[role].pop(n.pollWait, n.done, nil)
	switch {
	case errors.Is(err, errPopTimeout):
		n.stats.pollTimeouts.Add(1)
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	case err != nil:
		answer(ctx, fasthttp.StatusServiceUnavailable, "node closing\n")
		return
	}
	n.stats.relayed.Add(1)
	if msg.kind == websocket.TextMessage {
		ctx.SetContentType("text/plain; charset=utf-8")
	} else {
		ctx.SetContentType("application/octet-stream")
	}
	ctx.SetBody(msg.data)
}

// serveSend queues the request body for the other role of the session.
func (n *Node) serveSend(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		answer(ctx, fasthttp.StatusMethodNotAllowed, "use POST\n")
		return
	}
	id, role, ok := sessionRole(ctx, false)
	if !ok {
		return
	}
	var data []byte
	if r := ctx.RequestBodyStream(); r != nil {
		var err error
		data, err = io.ReadAll(io.LimitReader(r, MaxMessageBytes+1))
		if err != nil {
			answer(ctx, fasthttp.StatusBadRequest, "body read: "+err.Error()+"\n")
			return
		}
	} else {
		data = append([]byte(nil), ctx.PostBody()...)
	}
	if len(data) > MaxMessageBytes {
		answer(ctx, fasthttp.StatusRequestEntityTooLarge, "message too large\n")
		return
	}
	kind := websocket.BinaryMessage
	if utf8.Valid(data) {
		kind = websocket.TextMessage
	}
	s, ok := n.sessions.acquire(id)
	if !ok {
		answer(ctx, fasthttp.StatusServiceUnavailable, "too many sessions\n")
		return
	}
	defer n.sessions.release(s)
	if !s.inbox[1-role].push(message{kind: kind, data: data}, 0, n.done) {
		n.stats.dropped.Add(1)
		answer(ctx, fasthttp.StatusServiceUnavailable, "queue full\n")
		return
	}
	n.stats.sends.Add(1)
	ctx.SetStatusCode(fasthttp.StatusAccepted)
}

// serveWS upgrades to a WebSocket of the relay (customer, agent) or echo.
func (n *Node) serveWS(ctx *fasthttp.RequestCtx) {
	id, role, ok := sessionRole(ctx, true)
	if !ok {
		return
	}
	ws := &wsConn{node: n, session: id, role: role}
	if err := n.upgrader.Upgrade(ctx, ws.serve); err != nil {
		n.log.Debug().Err(err).Msg("websocket upgrade")
	}
}

// wsConn is one WebSocket of the node. serve runs in the connection's
// hijack goroutine and is its only reader; for relay roles it starts
// writeLoop, the only writer of data frames, and waits for it.
type wsConn struct {
	node    *Node
	session string
	role    int

	conn   *websocket.Conn
	in     *mailbox      // messages for this role
	out    *mailbox      // messages for the other role
	stop   chan struct{} // closed when the reader ends
	writer chan struct{} // closed when writeLoop returns
}

// trackWS registers c for Close; false means the node is closing.
func (n *Node) trackWS(c *websocket.Conn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.wss[c] = struct{}{}
	n.wg.Add(1)
	n.stats.wsOpen.Add(1)
	n.stats.wsTotal.Add(1)
	return true
}

func (n *Node) untrackWS(c *websocket.Conn) {
	n.mu.Lock()
	delete(n.wss, c)
	n.mu.Unlock()
	n.stats.wsOpen.Add(-1)
	n.wg.Done()
}

func (w *wsConn) serve(c *websocket.Conn) {
	n := w.node
	if !n.trackWS(c) {
		_ = c.Close()
		return
	}
	defer n.untrackWS(c)
	defer c.Close()
	w.conn = c
	c.SetReadLimit(MaxMessageBytes)
	n.log.Debug().Str("remote", c.RemoteAddr().String()).Str("session", w.session).Int("role", w.role).Msg("websocket open")

	if w.role == roleEcho {
		w.echoLoop()
		return
	}
	s, ok := n.sessions.acquire(w.session)
	if !ok {
		msg := websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "too many sessions")
		_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		return
	}
	defer n.sessions.release(s)
	w.in, w.out = s.inbox[w.role], s.inbox[1-w.role]
	w.stop = make(chan struct{})
	w.writer = make(chan struct{})
	go w.writeLoop()
	w.readLoop()
	close(w.stop)
	_ = c.Close() // unblocks a writer stuck on a peer that does not read
	<-w.writer
}

// readLoop queues each message for the other role. Close frames are answered
// by the websocket package's default handler.
func (w *wsConn) readLoop() {
	n := w.node
	for {
		kind, data, err := w.conn.ReadMessage()
		if err != nil {
			w.logEnd(err)
			return
		}
		n.stats.wsMessages.Add(1)
		if !w.out.push(message{kind: kind, data: data}, relayWait, n.done) {
			n.stats.dropped.Add(1)
		}
	}
}

// writeLoop sends the messages addressed to this role.
func (w *wsConn) writeLoop() {
	defer close(w.writer)
	for {
		msg, err := w.in.pop(0, w.node.done, w.stop)
		if err != nil {
			return
		}
		if err := w.conn.WriteMessage(msg.kind, msg.data); err != nil {
			return
		}
		w.node.stats.relayed.Add(1)
	}
}

// echoLoop sends every message back as it came.
func (w *wsConn) echoLoop() {
	for {
		kind, data, err := w.conn.ReadMessage()
		if err != nil {
			w.logEnd(err)
			return
		}
		w.node.stats.wsMessages.Add(1)
		if err := w.conn.WriteMessage(kind, data); err != nil {
			w.logEnd(err)
			return
		}
	}
}

func (w *wsConn) logEnd(err error) {
	if e := w.node.log.Debug(); e.Enabled() {
		e.Err(err).Str("session", w.session).Int("role", w.role).Msg("websocket closed")
	}
}
