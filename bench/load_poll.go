package bench

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// pollWorker is one session of the longpoll scenario: a GET for the sticky
// cookie, then the customer POSTs its messages to /cobrowse/send on one
// keep-alive connection while the agent holds GET /cobrowse/poll on
// another. A session that fails or ends starts anew.
type pollWorker struct {
	run         *run
	id          int
	stats       *workerStats
	cust, agent *fasthttp.HostClient
	agentConn   connTracker // the agent's connection, to cut a poll that waits in vain
	msgs        *streamer
}

func (w *pollWorker) loop() {
	r := w.run
	w.cust = r.tgt.hostClient(r.cfg.Timeout)
	defer w.cust.CloseIdleConnections()
	w.agent = r.tgt.hostClient(r.cfg.Timeout)
	w.agent.ReadTimeout = 0 // a poll waits for the next message: the deadline of each bounds it
	w.agentConn.timeout = r.cfg.Timeout
	w.agent.Dial = w.agentConn.dial
	defer w.agent.CloseIdleConnections()
	w.msgs = r.newStreamer(w.id, r.cfg.Sessions, w.stats, opPoll, "poll")
	r.sessions(w.session)
}

// session runs one session until the run ends (true), the node ends it
// (true: stickiness counts it) or it fails (false).
func (w *pollWorker) session(attempt int) bool {
	r := w.run
	if !getPage(r, w.cust, w.stats) {
		return false
	}
	id := r.streamID(w.id, attempt)
	st := &pollStream{
		r: r, cookie: w.stats.sticky.cookie, node: w.stats.sticky.node, agentConn: &w.agentConn,
		sendURL: r.tgt.url(PathSend + "?session=" + id + "&role=customer"),
		pollURL: r.tgt.url(PathPoll + "?session=" + id + "&role=agent"),
	}
	st.sender = pollSide{hc: w.cust, req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse()}
	st.poller = pollSide{hc: w.agent, req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse()}
	defer st.release()
	nr := w.stats.node(st.node)
	nr.WSSessions++
	ok := w.msgs.drive(st, nr)
	nr.Requests += st.sender.answers + st.poller.answers
	// The first answer that ended the session or came from another node.
	for _, a := range []*answerError{st.sender.odd, st.poller.odd} {
		if a != nil {
			w.stats.observe(a.status, a.node, a.setCookie)
			break
		}
	}
	return ok
}

// pollStream is a stream over the long-poll transport. Its sender side is
// used by the sending goroutine only, its poller side by the receiving one.
type pollStream struct {
	r                *run
	cookie, node     string // the session's cookie value and node
	sendURL, pollURL string
	sender, poller   pollSide
	agentConn        *connTracker
}

// pollSide is one connection of a pollStream and what it saw.
type pollSide struct {
	hc      *fasthttp.HostClient
	req     *fasthttp.Request
	resp    *fasthttp.Response
	answers int64        // answers from the session's node
	odd     *answerError // the first answer that ended the session; nil for none
}

var _ stream = (*pollStream)(nil)

// answerError is an answer that ends a session: a status other than the
// one expected, or an answer from a node other than the session's.
type answerError struct {
	status          int
	node, setCookie string
}

func (e *answerError) Error() string {
	return fmt.Sprintf("answer %d from node %q", e.status, e.node)
}

// errSessionEnded is a session ended by its node (409) or moved to another
// node: stickiness accounts for it, not the errors.
var errSessionEnded = errors.New("bench: session ended")

func (st *pollStream) release() {
	for _, s := range []*pollSide{&st.sender, &st.poller} {
		fasthttp.ReleaseRequest(s.req)
		fasthttp.ReleaseResponse(s.resp)
	}
}

// do sends s.req and checks that the session's node answered one of ok.
func (st *pollStream) do(s *pollSide, deadline time.Time, ok ...int) error {
	if st.cookie != "" {
		s.req.Header.SetCookie(st.r.cfg.Cookie, st.cookie)
	}
	if err := s.hc.DoDeadline(s.req, s.resp, deadline); err != nil {
		return err
	}
	status, node := s.resp.StatusCode(), string(s.resp.Header.Peek(HeaderNode))
	if node == st.node {
		for _, code := range ok {
			if status == code {
				s.answers++
				return nil
			}
		}
	}
	a := &answerError{status: status, node: node, setCookie: setCookieOf(&s.resp.Header, st.r.cfg.Cookie)}
	if status == fasthttp.StatusConflict || (node != "" && node != st.node) {
		s.odd = a
		return errSessionEnded
	}
	return a
}

func (st *pollStream) send(msg []byte, deadline time.Time) error {
	s := &st.sender
	s.req.Reset()
	s.req.Header.SetMethod(fasthttp.MethodPost)
	s.req.SetRequestURI(st.sendURL)
	s.req.SetBody(msg)
	return st.do(s, deadline, fasthttp.StatusAccepted)
}

// recv polls until a message comes; a poll that the node ends empty (204,
// after its poll wait) is renewed until deadline.
func (st *pollStream) recv(deadline time.Time) ([]byte, error) {
	s := &st.poller
	for time.Now().Before(deadline) {
		s.req.Reset()
		s.req.SetRequestURI(st.pollURL)
		if err := st.do(s, deadline, fasthttp.StatusOK, fasthttp.StatusNoContent); err != nil {
			return nil, err
		}
		if s.resp.StatusCode() == fasthttp.StatusOK {
			return s.resp.Body(), nil
		}
	}
	return nil, fasthttp.ErrTimeout
}

// abort cuts the agent's connection, ending a poll in flight; a send in
// flight ends at its deadline.
func (st *pollStream) abort() { st.agentConn.cut() }

func (st *pollStream) lockstep() bool { return false }

// connTracker dials for a HostClient of one connection and remembers the
// connection, so that a request in flight on it can be cut.
type connTracker struct {
	timeout time.Duration
	mu      sync.Mutex
	conn    net.Conn // guarded by mu; the last one dialed
}

func (t *connTracker) dial(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, t.timeout)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.conn = c
	t.mu.Unlock()
	return c, nil
}

// cut closes the last connection dialed.
func (t *connTracker) cut() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn != nil {
		_ = t.conn.Close()
	}
}
