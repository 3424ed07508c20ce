//go:build linux

package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/proxy/internal/keepalive"
	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
)

// startLoopServer runs a Server on the http loops in front of a node that
// runs handle on each of its connections, with the access log in a buffer.
func startLoopServer(t *testing.T, cfg Config, handle func(net.Conn)) (*Server, string, *logBuffer) {
	t.Helper()
	node := serveConns(t, handle)
	cfg.Pool.Nodes = oneNode(node).Pool.Nodes
	cfg.AccessLog = true
	cfg.HTTPLoops = 1
	access := &logBuffer{}
	s, addr := serveWith(t, cfg, zerolog.Nop(), zerolog.New(access), false)
	if s.http == nil {
		t.Fatal("the http loops did not start")
	}
	return s, addr, access
}

// loopIdle counts the connections the loops hold idle: no goroutine, no
// buffer, waiting for epoll to report them readable.
func loopIdle(s *Server) int { return s.http.Idle() }

// pathNode answers each request on a node connection by its path:
// /big?n=N sends N bytes, /stream sends half of its 64 KiB body, then the
// rest once release is closed; anything else gets "ok".
func pathNode(release <-chan struct{}) func(net.Conn) {
	return func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if err := skipHead(br); err != nil {
				return
			}
			path := strings.Fields(line)[1]
			switch {
			case strings.HasPrefix(path, "/big?n="):
				n, _ := strconv.Atoi(strings.TrimPrefix(path, "/big?n="))
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
				if _, err := io.CopyN(c, zeros{}, int64(n)); err != nil {
					return
				}
			case path == "/stream":
				const half = 32 << 10
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 2*half)
				c.Write(make([]byte, half))
				<-release
				c.Write(make([]byte, half))
			default:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		}
	}
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// loopAnswer reads one answer from br and returns its status and body
// length.
func loopAnswer(t *testing.T, br *bufio.Reader) (status, n int) {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("status line: %v", err)
	}
	status, _ = strconv.Atoi(strings.Fields(line)[1])
	length := 0
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("head: %v", err)
		}
		if h == "\r\n" {
			break
		}
		if v, ok := strings.CutPrefix(strings.ToLower(h), "content-length: "); ok {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	m, err := io.CopyN(io.Discard, br, int64(length))
	if err != nil {
		t.Fatalf("body: %d of %d bytes: %v", m, length, err)
	}
	return status, int(m)
}

func dialLoop(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReaderSize(c, 64<<10)
}

// TestLoopPipelined: requests sent together are answered in order, the
// connection then waits on its loop, and a later request is read from
// there.
func TestLoopPipelined(t *testing.T) {
	s, addr, _ := startLoopServer(t, Config{}, pathNode(nil))
	c, br := dialLoop(t, addr)
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /big?n=5000 HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
	for i, want := range []int{2, 5000, 2} {
		if status, n := loopAnswer(t, br); status != 200 || n != want {
			t.Fatalf("answer %d: %d with %d bytes, want 200 with %d", i, status, n, want)
		}
	}
	if !waitCond(5*time.Second, func() bool { return loopIdle(s) == 1 }) {
		t.Fatalf("%d connections idle on the loops, want 1", loopIdle(s))
	}
	for range 3 {
		io.WriteString(c, "GET /d HTTP/1.1\r\nHost: x\r\n\r\n")
		if status, n := loopAnswer(t, br); status != 200 || n != 2 {
			t.Fatalf("request from the loop: %d with %d bytes", status, n)
		}
	}
}

// TestLoopNextRequestWhileStreaming: a client that sends its next request
// while the answer to the one before is still coming gets both answers, in
// order, and the connection goes back to its loop after.
func TestLoopNextRequestWhileStreaming(t *testing.T) {
	release := make(chan struct{})
	s, addr, _ := startLoopServer(t, Config{}, pathNode(release))
	c, br := dialLoop(t, addr)
	io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := br.Peek(1); err != nil { // the answer has begun
		t.Fatal(err)
	}
	io.WriteString(c, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
	close(release)
	if status, n := loopAnswer(t, br); status != 200 || n != 64<<10 {
		t.Fatalf("streamed answer: %d with %d bytes", status, n)
	}
	if status, n := loopAnswer(t, br); status != 200 || n != 2 {
		t.Fatalf("next answer: %d with %d bytes", status, n)
	}
	if !waitCond(5*time.Second, func() bool { return loopIdle(s) == 1 }) {
		t.Fatalf("%d connections idle on the loops, want 1", loopIdle(s))
	}
}

// dialSmallReceiveBuffer connects to addr with a 16 KiB receive buffer, so
// that a large answer fills the socket and the relay has to wait.
func dialSmallReceiveBuffer(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
		return nil
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLoopSlowReader: an answer far larger than the socket buffers, read
// slowly, arrives whole (the relay waits for the client to read, under the
// write timeout), and the connection carries the next request.
func TestLoopSlowReader(t *testing.T) {
	const size = 4 << 20
	_, addr, _ := startLoopServer(t, Config{}, pathNode(nil))
	c := dialSmallReceiveBuffer(t, addr)
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET /big?n="+strconv.Itoa(size)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReaderSize(&slowReader{c: c}, 4<<10)
	if status, n := loopAnswer(t, br); status != 200 || n != size {
		t.Fatalf("large answer: %d with %d bytes, want %d", status, n, size)
	}
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	if status, n := loopAnswer(t, br); status != 200 || n != 2 {
		t.Fatalf("next answer: %d with %d bytes", status, n)
	}
}

// slowReader reads at most 4 KiB at a time and pauses after each read of
// 64 KiB: the reader under test is slow.
type slowReader struct {
	c    net.Conn
	read int
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(p) > 4<<10 {
		p = p[:4<<10]
	}
	n, err := r.c.Read(p)
	if r.read/(64<<10) != (r.read+n)/(64<<10) {
		time.Sleep(time.Millisecond)
	}
	r.read += n
	return n, err
}

// TestLoopIdleTimeout: the loop's timer closes a connection idle past
// --idle-timeout, and one that sent nothing past --header-timeout; no
// goroutine waits for either meanwhile.
func TestLoopIdleTimeout(t *testing.T) {
	const idle, head = 300 * time.Millisecond, 400 * time.Millisecond
	s, addr, _ := startLoopServer(t, Config{IdleTimeout: idle, HeaderTimeout: head}, pathNode(nil))
	for _, tc := range []struct {
		name string
		send bool
		want time.Duration
	}{
		{"idle after a request", true, idle},
		{"silent from the start", false, head},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Timed from before the dial and the request: tether's timers
			// start after them, so the close cannot come sooner than
			// want after from.
			from := time.Now()
			c, br := dialLoop(t, addr)
			if tc.send {
				io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
				if status, _ := loopAnswer(t, br); status != 200 {
					t.Fatalf("status %d", status)
				}
			}
			if !waitCond(5*time.Second, func() bool { return loopIdle(s) == 1 }) {
				t.Fatalf("%d connections idle on the loops, want 1", loopIdle(s))
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("read after the timeout: %v, want EOF", err)
			}
			// The defaults (10 s for a head, 120 s idle) are far past the
			// upper bound.
			if took := time.Since(from); took < tc.want-50*time.Millisecond || took > tc.want+4*time.Second {
				t.Errorf("closed after %s, want about %s", took, tc.want)
			}
			if !waitCond(5*time.Second, func() bool { return s.conns.open.Load() == 0 }) {
				t.Errorf("%d connections still counted open", s.conns.open.Load())
			}
		})
	}
}

// TestLoopLongPollHangup: a client that hangs up while the node holds its
// request (a long poll) gets the node connection closed at once and a 499
// in the access log, on a new connection and on a cold one (which the
// watch of the client makes warm).
func TestLoopLongPollHangup(t *testing.T) {
	for _, cold := range []bool{false, true} {
		t.Run(fmt.Sprintf("cold %v", cold), func(t *testing.T) {
			asked, nodeClosed := make(chan struct{}), make(chan struct{})
			s, addr, access := startLoopServer(t, Config{}, func(c net.Conn) {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil || skipHead(br) != nil {
						return
					}
					if !strings.Contains(line, "/poll") {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
						continue
					}
					close(asked)
					if _, err := br.ReadByte(); err == io.EOF {
						close(nodeClosed)
					}
					return
				}
			})
			c, br := dialLoop(t, addr)
			if cold {
				idleCold(t, s, c, br)
			}
			io.WriteString(c, "GET /cobrowse/poll HTTP/1.1\r\nHost: x\r\n\r\n")
			select {
			case <-asked:
			case <-time.After(10 * time.Second):
				t.Fatal("the request never reached the node")
			}
			c.Close()
			select {
			case <-nodeClosed:
			case <-time.After(10 * time.Second):
				t.Fatal("the node connection stayed open after the client hung up")
			}
			if !waitCond(5*time.Second, func() bool { return strings.Contains(access.String(), `"status":499`) }) {
				t.Fatalf("no 499 in the access log:\n%s", access.String())
			}
		})
	}
}

// TestLoopDrainAnswersArrivedRequest: a request that reaches an idle
// connection as Shutdown begins, before its loop saw it readable, is
// answered with Connection: close, not reset.
func TestLoopDrainAnswersArrivedRequest(t *testing.T) {
	s, addr, _ := startLoopServer(t, Config{}, pathNode(nil))
	c, br := dialLoop(t, addr)
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	if status, _ := loopAnswer(t, br); status != 200 {
		t.Fatalf("status %d", status)
	}
	if !waitCond(5*time.Second, func() bool { return loopIdle(s) == 1 }) {
		t.Fatalf("%d connections idle on the loops, want 1", loopIdle(s))
	}
	keepalive.TestHookDrain = func() { io.WriteString(c, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n") }
	t.Cleanup(func() { keepalive.TestHookDrain = nil })
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}()
	defer func() { <-done }()
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("the request that came as the drain began: %q, %v; want a 200", line, err)
	}
}

// idleOnLoops counts the connections idle on the loops that hold no
// net.Conn (cold) and those that hold one (warm).
func idleOnLoops(s *Server) (cold, warm int) {
	s.conns.mu.Lock()
	defer s.conns.mu.Unlock()
	for _, c := range s.conns.active {
		if !c.lc.place.Idle() {
			continue
		}
		if c.nc == nil {
			cold++
		} else {
			warm++
		}
	}
	return cold, warm
}

// TestLoopIdleCold: a connection idle on its loop after its first request
// holds no net.Conn, only its descriptor; its next request is answered
// (the connection warms up), it parks warm, and the sweep cools it again
// once idle for coldAfter. A client that hangs up on a cold connection
// ends it.
func TestLoopIdleCold(t *testing.T) {
	defer func(d time.Duration) { coldAfter = d }(coldAfter)
	coldAfter = 200 * time.Millisecond
	s, addr, access := startLoopServer(t, Config{IdleTimeout: 30 * time.Second}, pathNode(nil))
	c, br := dialLoop(t, addr)
	get := func(path string) {
		t.Helper()
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if status, n := loopAnswer(t, br); status != 200 || n != 2 {
			t.Fatalf("%s: %d with %d bytes", path, status, n)
		}
	}
	cold := func() bool { n, _ := idleOnLoops(s); return n == 1 }
	get("/a")
	if !waitCond(5*time.Second, cold) {
		cold, warm := idleOnLoops(s)
		t.Fatalf("after the first request: %d cold and %d warm connections idle, want 1 cold", cold, warm)
	}
	for _, path := range []string{"/b", "/c"} {
		get(path)
		if !waitCond(5*time.Second, cold) {
			cold, warm := idleOnLoops(s)
			t.Fatalf("after %s: %d cold and %d warm connections idle, want 1 cold after %v", path, cold, warm, coldAfter)
		}
	}
	if got := strings.Count(access.String(), `"status":200`); got != 3 {
		t.Errorf("%d answers logged, want 3:\n%s", got, access.String())
	}
	c.Close()
	if !waitCond(5*time.Second, func() bool { return s.conns.open.Load() == 0 }) {
		t.Errorf("%d connections still counted open after the client hung up", s.conns.open.Load())
	}
}

// idleCold has c, s's one connection on its loops, answer a first request,
// then waits until it idles cold.
func idleCold(t *testing.T, s *Server, c net.Conn, br *bufio.Reader) {
	t.Helper()
	io.WriteString(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	if status, _ := loopAnswer(t, br); status != 200 {
		t.Fatalf("first request: status %d", status)
	}
	if !waitCond(5*time.Second, func() bool { cold, warm := idleOnLoops(s); return cold == 1 && warm == 0 }) {
		t.Fatal("not idle cold after the first request")
	}
}

// TestLoopServedCold: requests on a cold connection are served on its
// bare descriptor, without making it a net.Conn, as long as nothing has to
// wait on the client's socket. A read or write that waits (a head in two
// pieces, a slow reader, an upgrade; a long poll's watch is in
// TestLoopLongPollHangup) makes it warm first; it then stays warm while
// requests come more often than coldAfter, and is cooled again once idle
// that long.
func TestLoopServedCold(t *testing.T) {
	defer func(d time.Duration) { coldAfter = d }(coldAfter)
	coldAfter = time.Second
	var warmed atomic.Int32
	hook := func() { warmed.Add(1) }
	testHookWarm.Store(&hook)
	t.Cleanup(func() { testHookWarm.Store(nil) })
	idle := func(s *Server, wantCold bool) bool {
		cold, warm := idleOnLoops(s)
		if wantCold {
			return cold == 1 && warm == 0
		}
		return cold == 0 && warm == 1
	}
	coldConn := func(t *testing.T, s *Server, c net.Conn, br *bufio.Reader) {
		t.Helper()
		idleCold(t, s, c, br)
		warmed.Store(0) // warm-ups count from here
	}
	t.Run("requests, then a split head", func(t *testing.T) {
		s, addr, _ := startLoopServer(t, Config{IdleTimeout: 30 * time.Second}, pathNode(nil))
		c, br := dialLoop(t, addr)
		coldConn(t, s, c, br)
		get := func(wantCold bool) {
			t.Helper()
			io.WriteString(c, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
			if status, n := loopAnswer(t, br); status != 200 || n != 2 {
				t.Fatalf("status %d with %d bytes", status, n)
			}
			if !waitCond(5*time.Second, func() bool { return idle(s, wantCold) }) {
				cold, warm := idleOnLoops(s)
				t.Fatalf("after a request: %d cold and %d warm idle, want cold %v", cold, warm, wantCold)
			}
		}
		for range 5 {
			get(true)
			time.Sleep(coldAfter / 5)
		}
		if n := warmed.Load(); n != 0 {
			t.Fatalf("%d warm-ups for 5 requests on a cold connection, want 0", n)
		}
		io.WriteString(c, "GET /split HTTP/1.1\r\n")
		// The rest of the head comes once the read has found it missing
		// and waits: that wait makes the connection warm.
		if !waitCond(5*time.Second, func() bool { return warmed.Load() > 0 }) {
			t.Fatal("no warm-up for a head that came in part")
		}
		io.WriteString(c, "Host: x\r\n\r\n")
		if status, _ := loopAnswer(t, br); status != 200 {
			t.Fatalf("split head: status %d", status)
		}
		if !waitCond(5*time.Second, func() bool { return idle(s, false) }) {
			t.Fatal("not idle warm after the split head")
		}
		for range 3 {
			get(false)
			time.Sleep(coldAfter / 5)
		}
		if n := warmed.Load(); n != 1 {
			t.Errorf("%d warm-ups, want 1 (for the split head)", n)
		}
		if !waitCond(5*time.Second, func() bool { return idle(s, true) }) {
			t.Error("not cooled again after idling past coldAfter")
		}
	})

	t.Run("slow head", func(t *testing.T) {
		// The head's deadline, set while cold, holds once the read that
		// waits has made the connection warm.
		const head = 300 * time.Millisecond
		s, addr, _ := startLoopServer(t, Config{IdleTimeout: 30 * time.Second, HeaderTimeout: head}, pathNode(nil))
		c, br := dialLoop(t, addr)
		coldConn(t, s, c, br)
		from := time.Now()
		io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n") // never ends
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 408 ") {
			t.Fatalf("answer %q %v, want 408", line, err)
		}
		if took := time.Since(from); took < head-50*time.Millisecond || took > head+4*time.Second {
			t.Errorf("408 after %s, want about %s", took, head)
		}
		if n := warmed.Load(); n != 1 {
			t.Errorf("%d warm-ups for a head that waited, want 1", n)
		}
	})

	t.Run("slow reader", func(t *testing.T) {
		const size = 4 << 20
		s, addr, _ := startLoopServer(t, Config{}, pathNode(nil))
		c := dialSmallReceiveBuffer(t, addr)
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReaderSize(&slowReader{c: c}, 4<<10)
		coldConn(t, s, c, br)
		io.WriteString(c, "GET /big?n="+strconv.Itoa(size)+" HTTP/1.1\r\nHost: x\r\n\r\n")
		// Nothing is read until the answer has filled the socket's
		// buffers: a reader as fast as the node (a loaded machine, the
		// race detector) would let every write through without waiting.
		if !waitCond(10*time.Second, func() bool { return warmed.Load() > 0 }) {
			t.Fatal("no warm-up while the client read nothing of a 4 MiB answer")
		}
		if status, n := loopAnswer(t, br); status != 200 || n != size {
			t.Fatalf("large answer: %d with %d bytes, want %d", status, n, size)
		}
		if n := warmed.Load(); n != 1 {
			t.Errorf("%d warm-ups for a write that waited, want 1", n)
		}
		io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
		if status, n := loopAnswer(t, br); status != 200 || n != 2 {
			t.Fatalf("next answer: %d with %d bytes", status, n)
		}
	})

	t.Run("upgrade", func(t *testing.T) {
		s, addr, _ := startLoopServer(t, Config{}, gatedNode(nil, nil))
		c, br := dialLoop(t, addr)
		coldConn(t, s, c, br)
		io.WriteString(c, wiretest.Handshake("/ws")+"ping")
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 101 ") {
			t.Fatalf("upgrade answer %q %v, want 101", line, err)
		}
		if err := skipHead(br); err != nil {
			t.Fatal(err)
		}
		p := make([]byte, 4)
		if _, err := io.ReadFull(br, p); err != nil || string(p) != "ping" {
			t.Fatalf("through the tunnel: %q %v, want ping", p, err)
		}
		if n := warmed.Load(); n != 1 {
			t.Errorf("%d warm-ups for an upgrade, want 1", n)
		}
	})
}

// TestLoopColdHangup: a client that closes its cold idle connection, or
// resets it, ends it on tether's side without it being made a net.Conn
// again, and it is accounted for.
func TestLoopColdHangup(t *testing.T) {
	var warmed atomic.Int32
	hook := func() { warmed.Add(1) }
	testHookWarm.Store(&hook)
	t.Cleanup(func() { testHookWarm.Store(nil) })
	s, addr, _ := startLoopServer(t, Config{IdleTimeout: 30 * time.Second}, pathNode(nil))
	for _, reset := range []bool{false, true} {
		c, br := dialLoop(t, addr)
		io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
		if status, _ := loopAnswer(t, br); status != 200 {
			t.Fatalf("status %d", status)
		}
		if !waitCond(5*time.Second, func() bool { n, _ := idleOnLoops(s); return n == 1 }) {
			t.Fatal("the connection is not idle cold on its loop")
		}
		warmed.Store(0) // its first request may have come after it parked
		if reset {
			c.(*net.TCPConn).SetLinger(0)
		}
		c.Close()
		if !waitCond(5*time.Second, func() bool { return s.conns.open.Load() == 0 }) {
			t.Fatalf("reset %v: %d connections still counted open", reset, s.conns.open.Load())
		}
		if n := warmed.Load(); n != 0 {
			t.Errorf("reset %v: the hung-up connection was warmed up", reset)
		}
	}
}
