package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tether-lb/tether/proxy/internal/sockio"
)

// startSilentNode accepts connections, reads what comes and never answers;
// it reports each connection tether closes on the channel.
func startSilentNode(t *testing.T) (string, <-chan struct{}) {
	closed := make(chan struct{}, 16)
	addr := serveConns(t, func(c net.Conn) {
		defer c.Close()
		io.Copy(io.Discard, c)
		select {
		case closed <- struct{}{}:
		default:
		}
	})
	return addr, closed
}

// TestTLSClientHangsUpDuringLongPoll: a TLS client that closes (a
// close_notify alert, then its FIN) while its request waits for the node is
// noticed: the node connection is closed at once.
func TestTLSClientHangsUpDuringLongPoll(t *testing.T) {
	for i := range 5 { // the alert and the FIN may wake the watcher apart or together
		node, closed := startSilentNode(t)
		s, addr := startTLSServer(t, node)
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /cobrowse/poll HTTP/1.1\r\nHost: a\r\n\r\n")
		awaitingNode(t, s)
		c.Close()
		select {
		case <-closed:
		case <-time.After(3 * time.Second):
			t.Fatalf("round %d: the node connection stayed open after the TLS client left", i)
		}
	}
}

// TestShutdownEndsAwaitedAnswers: when Shutdown's time runs out while a
// request waits for a slow answer (a long poll), closing the client's
// connection ends the wait: Shutdown returns when its context ends, not
// when the node would have answered.
func TestShutdownEndsAwaitedAnswers(t *testing.T) {
	node, _ := startSilentNode(t)
	cfg := oneNode(node)
	cfg.UpstreamTimeout = 20 * time.Second
	s, addr := startServer(t, cfg, false)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /cobrowse/poll HTTP/1.1\r\nHost: a\r\n\r\n")
	awaitingNode(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("Shutdown = %v after %v, want its context's end within 2 s", err, time.Since(start))
	}
}

// TestShutdownServesAFreshConnection: a connection accepted just before
// Shutdown whose first request arrives a moment later is answered (with
// Connection: close), not dropped: during a hitless restart its client
// chose this process, and the listeners closed behind it.
func TestShutdownServesAFreshConnection(t *testing.T) {
	node := startRawNode(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	s, addr := startServer(t, oneNode(node.ln.Addr().String()), false)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "the connection accepted", func() bool { return s.Conns() == 1 })
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(t.Context()) }()
	waitFor(t, "Shutdown begun", s.isClosing)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	got, err := io.ReadAll(c)
	if !strings.HasPrefix(string(got), "HTTP/1.1 200") || !strings.Contains(string(got), "Connection: close") {
		t.Fatalf("first request after Shutdown began: %q, %v; want a 200 with Connection: close", got, err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
}

// awaitingNode waits until s has a request at its node, then for three hot
// windows more, after which the answer is awaited (awaitAnswer) with the
// client watched. A client that leaves while its request is still in the
// hot window must be noticed as well: the wait that follows finds it gone.
func awaitingNode(t *testing.T, s *Server) {
	t.Helper()
	waitFor(t, "the request at the node", func() bool { return s.Occupancy().InFlight == 1 })
	time.Sleep(3 * sockio.HotWindow)
}

// waitFor polls cond until it holds, for 5 seconds at most.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
