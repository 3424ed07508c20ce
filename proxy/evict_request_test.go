package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/pool"
)

// hangingNode answers requests until hang is set; then, like a stopped
// process whose kernel still accepts connections, it answers nothing and
// holds every connection, new ones included, until the test ends. It
// counts the connections it accepted and the request heads it holds
// unanswered.
type hangingNode struct {
	addr     string
	hang     atomic.Bool
	accepted atomic.Int64
	held     atomic.Int64
	quit     chan struct{}
}

func startHangingNode(t *testing.T, answer string) *hangingNode {
	n := &hangingNode{quit: make(chan struct{})}
	t.Cleanup(func() { close(n.quit) })
	n.addr = serveConns(t, func(c net.Conn) {
		defer c.Close()
		n.accepted.Add(1)
		br := bufio.NewReader(c)
		// Whether to answer is decided when a head has come: a check
		// before the read could see hang set by a test that already read
		// the last answer, and leave the next head unread and uncounted.
		for {
			if err := skipHead(br); err != nil {
				break
			}
			if n.hang.Load() {
				n.held.Add(1)
				break
			}
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
		<-n.quit
	})
	return n
}

// TestRequestCaughtByEviction: a request waiting on a reused pooled
// connection for a node that hangs is answered 502 as soon as the node is
// marked down (its eviction closes the connection), not retried on the same
// node (which would be a new connection its kernel accepts, and a wait for
// the whole upstream timeout): the node gets no new connection, and the
// access log says the node went down.
func TestRequestCaughtByEviction(t *testing.T) {
	node := startHangingNode(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	const upstream = 8 * time.Second
	cfg := oneNode(node.addr)
	cfg.UpstreamTimeout = upstream
	cfg.AccessLog = true
	cfg.Pool.Cooldown = time.Minute // the node stays down for the test
	var access logBuffer
	s, addr := serveWith(t, cfg, zerolog.Nop(), zerolog.New(&access), false)
	n := s.Pool().Node("CB_Server_1")

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * upstream))
	br := bufio.NewReader(c)
	const req = "GET /cobrowse/poll HTTP/1.1\r\nHost: a\r\nCookie: gcbSessionServer=CB_Server_1\r\n\r\n"
	io.WriteString(c, req)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	// The connection goes back to the pool just after the answer is out.
	deadline := time.Now().Add(5 * time.Second)
	for n.IdleConns() != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n.IdleConns() != 1 {
		t.Fatalf("%d idle connections after the first answer, want 1", n.IdleConns())
	}

	node.hang.Store(true)
	io.WriteString(c, req)
	deadline = time.Now().Add(5 * time.Second)
	// Its head at the node, the request waits on the reused connection
	// (in flight counts from the pick, before the connection is taken).
	for node.held.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if node.held.Load() == 0 {
		t.Fatal("second request never reached the node")
	}
	start := time.Now()
	n.Fail(errors.New("health probe timed out"))
	resp, err := http.ReadResponse(br, nil)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("no answer after the node went down: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 || took > 2*time.Second {
		t.Errorf("answered %d after %v, want 502 at once (the upstream timeout is %v)", resp.StatusCode, took, upstream)
	}
	if got := node.accepted.Load(); got != 1 || n.Dials.Load() != 1 {
		t.Errorf("the down node got %d connections (%d dials), want only the first", got, n.Dials.Load())
	}
	var line string
	for time.Now().Before(deadline) {
		for l := range strings.Lines(access.String()) {
			if strings.Contains(l, `"status":502`) {
				line = l
			}
		}
		if line != "" {
			break
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("access log: %s", line)
	if !strings.Contains(line, `"error":"`) || !strings.Contains(line, "node down") {
		t.Errorf("access log line %q: want the error to say the node went down", line)
	}
}

// TestStaleRetryRoutesAgain: a request whose reused connection turns out
// closed by its node is sent again through routing, so a node that a reload
// replaced meanwhile (its name now on a new address) is not dialled again
// at its old one.
func TestStaleRetryRoutesAgain(t *testing.T) {
	// The old node answers once, then hangs up on the kept connection as a
	// node does when its keep-alive timeout passes.
	var oldAccepted atomic.Int64
	closed := make(chan struct{})
	oldAddr := serveConns(t, func(c net.Conn) {
		defer c.Close()
		if oldAccepted.Add(1) > 1 {
			io.Copy(io.Discard, c)
			return
		}
		br := bufio.NewReader(c)
		if skipHead(br) == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Node: old\r\nContent-Length: 0\r\n\r\n")
		}
		c.(*net.TCPConn).CloseWrite()
		close(closed)
		io.Copy(io.Discard, c)
	})
	newNode := startRawNode(t, "HTTP/1.1 200 OK\r\nX-Node: new\r\nContent-Length: 0\r\n\r\n")
	cfg := oneNode(oldAddr)
	cfg.UpstreamTimeout = 3 * time.Second // bounds the wait on a wrong retry
	reloaded := cfg.Pool
	reloaded.Nodes = []pool.NodeConfig{{Name: "CB_Server_1", URL: "http://" + newNode.ln.Addr().String()}}
	// The hook is set before the server starts and cleared after it has
	// shut down (cleanups run last first); armed lets it act once.
	var armed atomic.Bool
	var s *Server
	testHookSendEarly = func(net.Conn) {
		if armed.CompareAndSwap(true, false) {
			if err := s.Pool().Update(reloaded); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(func() { testHookSendEarly = nil })
	s, addr := startServer(t, cfg, false)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	const req = "GET / HTTP/1.1\r\nHost: a\r\nCookie: gcbSessionServer=CB_Server_1\r\n\r\n"
	io.WriteString(c, req)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.Header.Get("X-Node") != "old" {
		t.Fatalf("first request: %v %v", resp, err)
	}
	<-closed

	// The reload lands while the request is on the stale connection.
	armed.Store(true)
	io.WriteString(c, req)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("X-Node") != "new" {
		t.Errorf("retried request: %d from %q, want 200 from the node now named CB_Server_1", resp.StatusCode, resp.Header.Get("X-Node"))
	}
	if got := oldAccepted.Load(); got != 1 {
		t.Errorf("the replaced node got %d connections, want only the first", got)
	}
}
