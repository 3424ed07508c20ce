package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
	"golang.org/x/sys/unix"
)

// startHandOffNode is one fake node for two servers: it answers a
// WebSocket handshake with its 101 and then echoes bytes, and any other
// request with 200 "ok" on a keep-alive connection.
func startHandOffNode(t *testing.T) string { return startGatedNode(t, nil, nil) }

// startGatedNode is startHandOffNode whose answer to /slow (a long poll)
// waits for gate to close; it tells arrived when /slow arrives.
func startGatedNode(t *testing.T, arrived chan<- struct{}, gate <-chan struct{}) string {
	return serveConns(t, gatedNode(arrived, gate))
}

// gatedNode is startGatedNode's handler of a node connection.
func gatedNode(arrived chan<- struct{}, gate <-chan struct{}) func(net.Conn) {
	return func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if key := req.Header.Get("Sec-WebSocket-Key"); key != "" {
				io.WriteString(c, wiretest.Switched(key))
				io.Copy(c, br) // echo until the client ends its side
				return
			}
			io.Copy(io.Discard, req.Body)
			if req.URL.Path == "/slow" {
				arrived <- struct{}{}
				<-gate
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	}
}

// handOffPair is an old and a new server in front of the same node, each
// with its access log and process log in buffers.
type handOffPair struct {
	old, new             *Server
	oldAddr              string
	oldAccess, newAccess *logBuffer
	oldLog, newLog       *logBuffer
}

func startHandOffPair(t *testing.T, node string) *handOffPair {
	t.Helper()
	return startHandOffPairWith(t, node, func(*Config) {})
}

// startHandOffPairWith is startHandOffPair with the new server's
// configuration changed by tweak.
func startHandOffPairWith(t *testing.T, node string, tweak func(*Config)) *handOffPair {
	t.Helper()
	return startHandOffPairTweaked(t, node, func(*Config) {}, tweak)
}

// startHandOffPairTweaked is startHandOffPair with each server's
// configuration changed by its own function.
func startHandOffPairTweaked(t *testing.T, node string, oldTweak, newTweak func(*Config)) *handOffPair {
	t.Helper()
	cfg := oneNode(node)
	cfg.AccessLog = true
	oldTweak(&cfg)
	p := &handOffPair{oldAccess: &logBuffer{}, newAccess: &logBuffer{}, oldLog: &logBuffer{}, newLog: &logBuffer{}}
	p.old, p.oldAddr = serveWith(t, cfg, zerolog.New(p.oldLog), zerolog.New(p.oldAccess), false)
	cfg = oneNode(node)
	cfg.AccessLog = true
	newTweak(&cfg)
	p.new, _ = serveWith(t, cfg, zerolog.New(p.newLog), zerolog.New(p.newAccess), false)
	return p
}

// passOver gives what h hands to the new server as the hand-over socket
// would: each descriptor duplicated (SCM_RIGHTS), each state through JSON.
func passOver(t *testing.T, h *Handoff) ([]HandedSession, []HandedConn) {
	t.Helper()
	var sessions []HandedSession
	var conns []HandedConn
	for _, hs := range h.Sessions() {
		var m SessionMeta
		roundTripJSON(t, hs.Meta, &m)
		sessions = append(sessions, HandedSession{Client: dupFD(t, hs.Client), Node: dupFD(t, hs.Node), Meta: m})
	}
	for _, hc := range h.Conns() {
		var m ConnMeta
		roundTripJSON(t, hc.Meta, &m)
		conns = append(conns, HandedConn{FD: dupFD(t, hc.FD), Meta: m})
	}
	return sessions, conns
}

func dupFD(t *testing.T, fd int) int {
	t.Helper()
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("dup %d: %v", fd, err)
	}
	return d
}

func roundTripJSON(t *testing.T, in, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}

// wsClient is a WebSocket client of the echo node through tether: each
// frame it sends must come back, exactly once and in order.
type wsClient struct {
	t     *testing.T
	c     net.Conn
	br    *bufio.Reader
	sent  int64 // bytes sent after the handshake
	seq   int
	start time.Time // when the 101 was read
}

func dialWS(t *testing.T, addr, path string) *wsClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, wiretest.Handshake(path))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return &wsClient{t: t, c: c, br: br, start: time.Now()}
}

// send writes the next frame and returns it.
func (w *wsClient) send() []byte {
	w.seq++
	payload := binary.BigEndian.AppendUint32([]byte(fmt.Sprintf("frame %d of %p ", w.seq, w)), uint32(w.seq))
	f := wiretest.Frame(true, 2, payload, false)
	if _, err := w.c.Write(f); err != nil {
		w.t.Fatalf("write frame %d: %v", w.seq, err)
	}
	w.sent += int64(len(f))
	return f
}

// expect reads len(f) bytes and fails unless they are f.
func (w *wsClient) expect(f []byte) {
	w.t.Helper()
	got := make([]byte, len(f))
	if _, err := io.ReadFull(w.br, got); err != nil {
		w.t.Fatalf("echo of frame %d: %v", w.seq, err)
	}
	if !bytes.Equal(got, f) {
		w.t.Fatalf("echo %q, want %q", got, f)
	}
}

func (w *wsClient) roundTrip() { w.expect(w.send()) }

// finish ends the client's side and checks that nothing more than what was
// echoed comes back before the end.
func (w *wsClient) finish() {
	w.t.Helper()
	w.c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(w.br)
	if err != nil || len(rest) > 0 {
		w.t.Fatalf("after the last echo: %q, %v; want the end and nothing more", rest, err)
	}
}

// wsLines returns the access-log lines of WebSocket sessions.
func wsLines(t *testing.T, l *logBuffer) []map[string]any {
	var out []map[string]any
	for _, m := range l.lines(t) {
		if m["ws"] == true {
			out = append(out, m)
		}
	}
	return out
}

// TestHandOffSessions: WebSocket sessions on the old server's splice loops
// move to the new server (their descriptors passed, the old copies closed)
// and go on with no byte lost or doubled, frames sent while they were
// frozen included; the old server logs no line for them and counts no
// eviction, and each new server's line at their end has the bytes of the
// whole session and a dur from its original request.
func TestHandOffSessions(t *testing.T) {
	p := startHandOffPair(t, startHandOffNode(t))
	const n = 3
	var ws [n]*wsClient
	t0 := time.Now()
	for i := range ws {
		ws[i] = dialWS(t, p.oldAddr, fmt.Sprintf("/cobrowse/ws?session=s%d", i))
	}
	// Traffic for a while, so that a dur counted from the adoption would
	// be far shorter than the session's.
	for i := 0; i < 5000 && time.Since(ws[0].start) < 100*time.Millisecond; i++ {
		for _, w := range ws {
			w.roundTrip()
		}
	}
	p.old.StopAccepting()
	h := p.old.HandOff()
	if len(h.Sessions()) != n || len(h.Conns()) != 0 {
		t.Fatalf("handed %d sessions and %d conns, want %d and 0", len(h.Sessions()), len(h.Conns()), n)
	}
	for _, hs := range h.Sessions() {
		m := hs.Meta
		if m.Node != "CB_Server_1" || m.Remote != "127.0.0.1" || !strings.HasPrefix(m.Line, "GET /cobrowse/ws?session=s") || m.Status != 101 || m.Why != "balance" || !m.Splice.WebSocket {
			t.Fatalf("meta %+v", m)
		}
		if m.Start.Before(t0.Round(0)) || m.Start.After(ws[n-1].start) {
			t.Fatalf("meta start %v, not between the dial at %v and the last 101 at %v", m.Start, t0, ws[n-1].start)
		}
	}
	frozen := make([][]byte, n)
	for i, w := range ws {
		frozen[i] = w.send() // reaches the node once the session runs again
	}
	sessions, conns := passOver(t, h)
	a, err := p.new.Adopt(sessions, conns)
	if err != nil {
		t.Fatal(err)
	}
	if s, c := a.Counts(); s != n || c != 0 {
		t.Fatalf("adopted %d sessions, %d conns; want %d, 0", s, c, n)
	}
	h.Commit()
	a.Start()
	for i, w := range ws {
		w.expect(frozen[i])
		for range 10 {
			w.roundTrip()
		}
	}
	oldNode, newNode := p.old.Pool().Node("CB_Server_1"), p.new.Pool().Node("CB_Server_1")
	if oldNode.Sessions() != 0 || oldNode.Active() != 0 || p.old.Conns() != 0 {
		t.Errorf("old server after Commit: %d sessions, %d active on its node, %d conns; want none",
			oldNode.Sessions(), oldNode.Active(), p.old.Conns())
	}
	if newNode.Sessions() != n || p.new.Conns() != n {
		t.Errorf("new server: %d sessions on its node, %d conns; want %d", newNode.Sessions(), p.new.Conns(), n)
	}
	var closing [n]time.Time // the session ends after its client ends its side
	for i, w := range ws {
		closing[i] = time.Now()
		w.finish()
	}
	if !waitCond(5*time.Second, func() bool { return len(wsLines(t, p.newAccess)) == n }) {
		t.Fatalf("new server's session lines: %v", p.newAccess.String())
	}
	for _, m := range wsLines(t, p.newAccess) {
		var i int
		if _, err := fmt.Sscanf(m["path"].(string), "/cobrowse/ws?session=s%d", &i); err != nil || i < 0 || i >= n {
			t.Fatalf("new server's line %s", m["_raw"])
		}
		w, end := ws[i], closing[i]
		if m["bytes_in"] != float64(w.sent) || m["bytes_out"] != float64(w.sent) || m["status"] != float64(101) || m["node"] != "CB_Server_1" {
			t.Errorf("new server's line %s: want bytes_in and bytes_out %d, status 101", m["_raw"], w.sent)
		}
		dur := time.Duration(m["dur"].(float64) * float64(time.Millisecond))
		// The request reached the old server after t0, its 101 before
		// w.start; the session ended after closing[i], its line before now.
		if min, max := end.Sub(w.start), time.Since(t0)+5*time.Millisecond; dur < min || dur > max {
			t.Errorf("new server's line %s: dur %v, want at least %v (from the request in the old server) and at most %v", m["_raw"], dur, min, max)
		}
	}
	if lines := wsLines(t, p.oldAccess); len(lines) != 0 {
		t.Errorf("old server logged %d session lines: %v", len(lines), lines)
	}
	if e := oldNode.Stats.Evictions.Load() + newNode.Stats.Evictions.Load(); e != 0 {
		t.Errorf("%d evictions counted, want 0", e)
	}
	if !waitCond(5*time.Second, func() bool { return newNode.Sessions() == 0 && p.new.Conns() == 0 }) {
		t.Errorf("new server after the sessions: %d sessions, %d conns", newNode.Sessions(), p.new.Conns())
	}
}

// TestHandOffAbort: a hand-over that fails leaves everything to the old
// server: its sessions go on (a frame sent while they were frozen
// included) and are logged by it at their end, and a keep-alive connection
// taken is answered by it, with Connection: close (the old process retires
// all the same: the listeners are the new one's); the new server drops
// what it adopted without a line or a count.
func TestHandOffAbort(t *testing.T) {
	p := startHandOffPair(t, startHandOffNode(t))
	w := dialWS(t, p.oldAddr, "/cobrowse/ws?session=s1")
	w.roundTrip()
	c, br := dialKeepAlive(t, p.oldAddr)
	ask(t, c, br, "/one")
	waitIdle(t, p.old, 1)
	p.old.StopAccepting()
	h := p.old.HandOff()
	if len(h.Sessions()) != 1 || len(h.Conns()) != 1 {
		t.Fatalf("handed %d sessions and %d conns, want 1 and 1", len(h.Sessions()), len(h.Conns()))
	}
	frozen := w.send()
	io.WriteString(c, "GET /two HTTP/1.1\r\nHost: a\r\n\r\n")
	sessions, conns := passOver(t, h)
	a, err := p.new.Adopt(sessions, conns)
	if err != nil {
		t.Fatal(err)
	}
	a.Drop()
	h.Abort()
	w.expect(frozen)
	w.roundTrip()
	readLastOK(t, c, br)
	w.finish()
	if !waitCond(5*time.Second, func() bool { return len(wsLines(t, p.oldAccess)) == 1 }) {
		t.Fatalf("old server's session line: %v", p.oldAccess.String())
	}
	if m := wsLines(t, p.oldAccess)[0]; m["bytes_in"] != float64(w.sent) || m["bytes_out"] != float64(w.sent) {
		t.Errorf("old server's line %s: want bytes %d each way", m["_raw"], w.sent)
	}
	if !logged(p.oldAccess, "/two") {
		t.Errorf("old server did not log /two: %s", p.oldAccess.String())
	}
	if s := p.newAccess.String(); s != "" {
		t.Errorf("new server logged %s", s)
	}
	if n := p.new.Pool().Node("CB_Server_1"); n.Sessions() != 0 || n.Active() != 0 || p.new.Conns() != 0 {
		t.Errorf("new server after Drop: %d sessions, %d active, %d conns", n.Sessions(), n.Active(), p.new.Conns())
	}
}

// TestAdoptUnknownNode: a session whose node the new server does not know
// (it left the configuration) is not adopted: its descriptors are closed
// and it is logged; once the old server lets go too, its client sees the
// end. The idle connection handed with it is adopted.
func TestAdoptUnknownNode(t *testing.T) {
	p := startHandOffPairWith(t, startHandOffNode(t), func(c *Config) { c.Pool.Nodes[0].Name = "CB_Other" })
	w := dialWS(t, p.oldAddr, "/cobrowse/ws?session=s1")
	w.roundTrip()
	c, br := dialKeepAlive(t, p.oldAddr)
	ask(t, c, br, "/one")
	waitIdle(t, p.old, 1)
	p.old.StopAccepting()
	h := p.old.HandOff()
	sessions, conns := passOver(t, h)
	a, err := p.new.Adopt(sessions, conns)
	if err != nil {
		t.Fatal(err)
	}
	if s, c := a.Counts(); s != 0 || c != 1 {
		t.Fatalf("adopted %d sessions, %d conns; want 0, 1", s, c)
	}
	if !strings.Contains(p.newLog.String(), `"node":"CB_Server_1"`) || !strings.Contains(p.newLog.String(), "unknown node") {
		t.Errorf("new server's log does not name the unknown node: %s", p.newLog.String())
	}
	h.Commit()
	a.Start()
	if rest, err := io.ReadAll(w.br); len(rest) != 0 || err != nil {
		t.Fatalf("session of the unknown node: %q, %v; want its end", rest, err)
	}
	ask(t, c, br, "/two")
	if n := p.new.Pool().Node("CB_Other"); n.Sessions() != 0 || p.new.Conns() != 1 {
		t.Errorf("new server: %d sessions, %d conns; want 0, 1", n.Sessions(), p.new.Conns())
	}
}

// logged waits (5 s at most) for a line of l for a request of path: it is
// written after the answer.
func logged(l *logBuffer, path string) bool {
	return waitCond(5*time.Second, func() bool { return strings.Contains(l.String(), `"path":"`+path+`"`) })
}

// TestAdoptWithoutLoops: a new server that runs no splice loops refuses
// the sessions, closing every descriptor it was given; the old server,
// told so, keeps everything running (the keep-alive connection to its
// next answer, which says Connection: close).
func TestAdoptWithoutLoops(t *testing.T) {
	p := startHandOffPairWith(t, startHandOffNode(t), func(c *Config) { c.SpliceLoops = -1 })
	w := dialWS(t, p.oldAddr, "/cobrowse/ws?session=s1")
	w.roundTrip()
	c, br := dialKeepAlive(t, p.oldAddr)
	ask(t, c, br, "/one")
	waitIdle(t, p.old, 1)
	p.old.StopAccepting()
	h := p.old.HandOff()
	sessions, conns := passOver(t, h)
	if len(sessions) != 1 || len(conns) != 1 {
		t.Fatalf("handed %d sessions, %d conns; want 1, 1", len(sessions), len(conns))
	}
	given := []int{sessions[0].Client, sessions[0].Node, conns[0].FD}
	inodes := make([]uint64, len(given))
	for i, fd := range given {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		inodes[i] = st.Ino
	}
	if a, err := p.new.Adopt(sessions, conns); err == nil || a != nil {
		t.Fatalf("Adopt without splice loops = %v, %v; want an error", a, err)
	}
	for i, fd := range given {
		// Closed: the number is free, or taken since by another socket.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err == nil && st.Ino == inodes[i] {
			t.Errorf("descriptor %d still open after a refused Adopt", fd)
		}
	}
	h.Abort()
	w.roundTrip()
	io.WriteString(c, "GET /two HTTP/1.1\r\nHost: a\r\n\r\n")
	readLastOK(t, c, br)
	w.finish()
	if n := p.new.Pool().Node("CB_Server_1"); n.Sessions() != 0 || p.new.Conns() != 0 {
		t.Errorf("new server after a refused Adopt: %d sessions, %d conns", n.Sessions(), p.new.Conns())
	}
}

// dialKeepAlive opens a plain keep-alive connection to addr.
func dialKeepAlive(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	return c, bufio.NewReader(c)
}

// ask sends a GET of path on c and reads its 200 "ok", kept alive.
func ask(t *testing.T, c net.Conn, br *bufio.Reader, path string) {
	t.Helper()
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n")
	readOK(t, br)
}

func readOK(t *testing.T, br *bufio.Reader) {
	t.Helper()
	r, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 || string(body) != "ok" || r.Close {
		t.Fatalf("answer %d %q close=%v, want 200 ok kept alive", r.StatusCode, body, r.Close)
	}
}

// readLastOK reads a 200 "ok" that says Connection: close, and then the
// end of the connection.
func readLastOK(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 || string(body) != "ok" || !r.Close {
		t.Fatalf("answer %d %q close=%v, want 200 ok with Connection: close", r.StatusCode, body, r.Close)
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the last answer: %d bytes, %v; want the end of the connection", n, err)
	}
}

// waitIdle waits until s has n connections waiting for a next request.
func waitIdle(t *testing.T, s *Server, n int) {
	t.Helper()
	idle := func() bool {
		s.conns.mu.Lock()
		defer s.conns.mu.Unlock()
		k := 0
		for _, c := range s.conns.active {
			if c.state.Load() == connIdle || c.lc.place.Idle() { // on its goroutine or its http loop
				k++
			}
		}
		return k == n
	}
	if !waitCond(5*time.Second, idle) {
		t.Fatalf("%d idle connections not reached", n)
	}
}

// TestHandOffIdleConn: an idle keep-alive connection moves between two
// requests: the client's next request on the same TCP connection is
// answered by the new server, including one sent while the connection was
// frozen, and one whose bytes had just woken the old server's wait (which
// must not read them).
func TestHandOffIdleConn(t *testing.T) {
	for _, c := range []struct {
		name string
		woke bool // the request arrives before HandOff, waking the wait
	}{
		{"request while frozen", false},
		{"request that woke the wait", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A goroutine per connection: its idle wait is what these cases
			// wake (TestHandOffIdleConnOnLoops has the loops').
			goroutines := func(c *Config) { c.HTTPLoops = -1 }
			p := startHandOffPairTweaked(t, startHandOffNode(t), goroutines, goroutines)
			cc, br := dialKeepAlive(t, p.oldAddr)
			ask(t, cc, br, "/one")
			waitIdle(t, p.old, 1)
			p.old.StopAccepting()
			var h *Handoff
			if c.woke {
				woke, proceed := make(chan *conn, 1), make(chan struct{})
				hook := func(c *conn) {
					select {
					case woke <- c:
						<-proceed
					default:
					}
				}
				testHookIdleWoke.Store(&hook)
				defer testHookIdleWoke.Store(nil)
				io.WriteString(cc, "GET /two HTTP/1.1\r\nHost: a\r\n\r\n")
				var woken *conn
				select {
				case woken = <-woke:
				case <-time.After(10 * time.Second):
					t.Fatal("the idle wait did not wake")
				}
				handed := make(chan *Handoff, 1)
				go func() { handed <- p.old.HandOff() }()
				waitFor(t, "HandOff takes the connection", func() bool { return woken.state.Load() == connHanded })
				close(proceed)
				h = <-handed
				testHookIdleWoke.Store(nil)
			} else {
				h = p.old.HandOff()
				io.WriteString(cc, "GET /two HTTP/1.1\r\nHost: a\r\n\r\n")
			}
			if len(h.Conns()) != 1 || len(h.Sessions()) != 0 {
				t.Fatalf("handed %d conns, %d sessions; want 1, 0", len(h.Conns()), len(h.Sessions()))
			}
			if m := h.Conns()[0].Meta; m.Remote != "127.0.0.1" || m.Served != 1 || m.Born.IsZero() {
				t.Fatalf("meta %+v", m)
			}
			_, conns := passOver(t, h)
			a, err := p.new.Adopt(nil, conns)
			if err != nil {
				t.Fatal(err)
			}
			h.Commit()
			if p.old.Conns() != 0 {
				t.Errorf("old server has %d conns after Commit", p.old.Conns())
			}
			a.Start()
			readOK(t, br)
			ask(t, cc, br, "/three")
			for _, path := range []string{"/two", "/three"} {
				if !logged(p.newAccess, path) {
					t.Errorf("new server did not log %s: %s", path, p.newAccess.String())
				}
				if strings.Contains(p.oldAccess.String(), `"path":"`+path+`"`) {
					t.Errorf("old server logged %s", path)
				}
			}
		})
	}
}

func sockioTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestHandOffBusyConnEnds: a plain keep-alive connection whose request is
// at the node when HandOff runs stays with the old server, which answers
// it with Connection: close and ends it, before Retire as well: kept open,
// it would take its client's next request only to close under it when
// Retire drains, where the client can reconnect to the new process at
// once. On the http loops and on a goroutine of its own.
func TestHandOffBusyConnEnds(t *testing.T) {
	for _, loops := range []int{0, -1} {
		t.Run(map[int]string{0: "loops", -1: "goroutine"}[loops], func(t *testing.T) {
			arrived, gate := make(chan struct{}, 1), make(chan struct{})
			cfg := oneNode(startGatedNode(t, arrived, gate))
			cfg.HTTPLoops = loops
			s, addr := startServer(t, cfg, false)
			c, br := dialKeepAlive(t, addr)
			ask(t, c, br, "/one")
			io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
			<-arrived
			s.StopAccepting()
			h := s.HandOff()
			if len(h.Conns()) != 0 {
				t.Fatalf("handed %d conns, want none: the only one is busy", len(h.Conns()))
			}
			close(gate)
			readLastOK(t, c, br)
			if s.isClosing() {
				t.Fatal("the server drains before Retire")
			}
			h.Commit()
			if !waitCond(5*time.Second, func() bool { return s.Conns() == 0 }) {
				t.Fatalf("%d connections left after the last answer", s.Conns())
			}
		})
	}
}

// TestRetire: after a committed hand-over the old server runs what it kept
// until it ends: a TLS WebSocket session goes on (TLS sessions stay), an
// idle TLS keep-alive connection is closed, a long poll in flight is
// answered with Connection: close; when Retire's context ends the session
// is told 1001, and Retire returns once it is over.
func TestRetire(t *testing.T) {
	arrived, gate := make(chan struct{}, 1), make(chan struct{})
	node := startGatedNode(t, arrived, gate)
	s, addr := startServer(t, oneNode(node), true)
	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(15 * time.Second))
		return c
	}
	wc := dial()
	io.WriteString(wc, wiretest.Handshake("/cobrowse/ws?session=s1"))
	w := &wsClient{t: t, c: wc, br: bufio.NewReader(wc)}
	if resp, err := http.ReadResponse(w.br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	w.roundTrip()
	kc := dial()
	kbr := bufio.NewReader(kc)
	ask(t, kc, kbr, "/one")
	waitIdle(t, s, 1)
	pc := dial()
	io.WriteString(pc, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-arrived

	s.StopAccepting()
	h := s.HandOff()
	if len(h.Sessions())+len(h.Conns()) != 0 {
		t.Fatalf("TLS traffic handed: %d sessions, %d conns", len(h.Sessions()), len(h.Conns()))
	}
	h.Commit()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	retired := make(chan error, 1)
	go func() { retired <- s.Retire(ctx, 5*time.Second) }()
	kc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := kbr.Read(make([]byte, 1)); err == nil || sockioTimeout(err) {
		t.Fatalf("idle TLS keep-alive connection under Retire: read %d, %v; want its end", n, err)
	}
	close(gate)
	pbr := bufio.NewReader(pc)
	if r, err := http.ReadResponse(pbr, nil); err != nil || r.StatusCode != 200 || !r.Close {
		t.Fatalf("long poll under Retire: %v, %v; want 200 with Connection: close", r, err)
	}
	if rest, err := io.ReadAll(pbr); string(rest) != "ok" || err != nil {
		t.Fatalf("long poll's body and end: %q, %v", rest, err)
	}
	for range 5 {
		w.roundTrip()
	}
	select {
	case err := <-retired:
		t.Fatalf("Retire returned %v with a session running", err)
	default:
	}
	cancel()
	// The Close frame: FIN, opcode 8, unmasked, status 1001 and a reason.
	head := make([]byte, 4)
	if _, err := io.ReadFull(w.br, head); err != nil || head[0] != 0x88 || head[1] < 2 || head[1] > 125 || binary.BigEndian.Uint16(head[2:]) != 1001 {
		t.Fatalf("after Retire's context: % x, %v; want a Close frame 1001", head, err)
	}
	wc.Close()
	select {
	case err := <-retired:
		if err != nil {
			t.Fatalf("Retire = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Retire did not return once the session ended")
	}
}

// TestHandOffIdleConnOnLoops: with --http-loops an idle keep-alive
// connection waits in its loop's epoll, not on a goroutine: HandOff takes it
// from the loop. Handed over, its next request (sent while frozen) is
// answered by the new server, whose loops then hold it; after an Abort the
// old server answers it, with Connection: close, and the connection ends.
func TestHandOffIdleConnOnLoops(t *testing.T) {
	for _, commit := range []bool{true, false} {
		t.Run(map[bool]string{true: "commit", false: "abort"}[commit], func(t *testing.T) {
			node := startHandOffNode(t)
			p := &handOffPair{oldAccess: &logBuffer{}, newAccess: &logBuffer{}, oldLog: &logBuffer{}, newLog: &logBuffer{}}
			for _, side := range []struct {
				s          **Server
				addr       *string
				log, acces *logBuffer
			}{{&p.old, &p.oldAddr, p.oldLog, p.oldAccess}, {&p.new, new(string), p.newLog, p.newAccess}} {
				cfg := oneNode(node)
				cfg.AccessLog = true
				cfg.HTTPLoops = 1
				*side.s, *side.addr = serveWith(t, cfg, zerolog.New(side.log), zerolog.New(side.acces), false)
			}
			cc, br := dialKeepAlive(t, p.oldAddr)
			ask(t, cc, br, "/one")
			onLoop := func(s *Server) func() bool {
				return func() bool {
					s.conns.mu.Lock()
					defer s.conns.mu.Unlock()
					for _, c := range s.conns.active {
						if c.lc.place.Idle() {
							return true
						}
					}
					return false
				}
			}
			if !waitCond(5*time.Second, onLoop(p.old)) {
				t.Fatal("the connection is not idle on the old server's loop")
			}
			p.old.StopAccepting()
			h := p.old.HandOff()
			if len(h.Conns()) != 1 {
				t.Fatalf("handed %d conns, want 1", len(h.Conns()))
			}
			io.WriteString(cc, "GET /two HTTP/1.1\r\nHost: a\r\n\r\n")
			serving, other := p.new, p.old
			if commit {
				_, conns := passOver(t, h)
				a, err := p.new.Adopt(nil, conns)
				if err != nil {
					t.Fatal(err)
				}
				h.Commit()
				a.Start()
			} else {
				h.Abort()
				serving, other = p.old, p.new
			}
			paths := []string{"/two", "/three"}
			if commit {
				readOK(t, br)
				if !waitCond(5*time.Second, onLoop(serving)) {
					t.Fatal("the connection is not idle on the serving server's loop after its request")
				}
				ask(t, cc, br, "/three")
			} else {
				readLastOK(t, cc, br)
				paths = paths[:1]
			}
			servingLog, otherLog := p.newAccess, p.oldAccess
			if !commit {
				servingLog, otherLog = p.oldAccess, p.newAccess
			}
			for _, path := range paths {
				if !logged(servingLog, path) {
					t.Errorf("%s not logged by the server that should serve it: %s", path, servingLog.String())
				}
				if strings.Contains(otherLog.String(), `"path":"`+path+`"`) {
					t.Errorf("%s logged by the other server", path)
				}
			}
			if other.Conns() != 0 {
				t.Errorf("the other server counts %d connections", other.Conns())
			}
		})
	}
}
