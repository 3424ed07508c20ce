package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-lb/tether/proxy/internal/splice"
	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
)

// startEchoNode answers a WebSocket handshake with its 101 and then echoes
// bytes.
func startEchoNode(t *testing.T) string {
	return serveConns(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.WriteString(c, wiretest.Switched(req.Header.Get("Sec-WebSocket-Key")))
		io.Copy(c, br)
	})
}

// startTLSServer starts tether with a self-signed TLS listener in front of
// the node at node and returns it and the listener's address.
func startTLSServer(t *testing.T, node string) (*Server, string) {
	return startServer(t, oneNode(node), true)
}

// TestShutdownClosesFreshTLSConnections: a client that completed its TLS
// handshake and sent nothing holds no reader past a moment, and Shutdown
// closes its connection at once instead of waiting out its time.
func TestShutdownClosesFreshTLSConnections(t *testing.T) {
	s, addr := startTLSServer(t, startEchoNode(t))
	var conns []*tls.Conn
	for range 5 {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// Past the hot window they wait holding nothing; past firstRequestGrace
	// they are no longer given time to send a first request.
	time.Sleep(firstRequestGrace + 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	// Waiting for the connections would take the context's 5 s and end
	// with its error; closing them takes a moment, a few sweeps at most.
	if err := s.Shutdown(ctx); err != nil || time.Since(start) > 2*time.Second {
		t.Fatalf("Shutdown = %v after %v, want nil within 2 s", err, time.Since(start))
	}
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("a fresh connection still open after Shutdown (read %d)", n)
		}
	}
}

// coalescingConn holds what is written until Flush or the next Read, so that
// several TLS records reach tether in one segment.
type coalescingConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf = append(c.buf, p...)
	c.mu.Unlock()
	return len(p), nil
}

func (c *coalescingConn) Flush() error {
	c.mu.Lock()
	b := c.buf
	c.buf = nil
	c.mu.Unlock()
	if len(b) == 0 {
		return nil
	}
	_, err := c.Conn.Write(b)
	return err
}

func (c *coalescingConn) Read(p []byte) (int, error) {
	if err := c.Flush(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// TestTLSRecordsArrivingTogether: a TLS 1.3 client's Finished, its upgrade
// request and its first WebSocket bytes, each its own record, reach tether
// in one segment (crypto/tls reads them in one go). The request is answered
// and the bytes reach the node at once: neither waits on a socket that has
// nothing more to say.
func TestTLSRecordsArrivingTogether(t *testing.T) {
	_, addr := startTLSServer(t, startEchoNode(t))
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cc := &coalescingConn{Conn: raw}
	c := tls.Client(cc, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	c.SetDeadline(time.Now().Add(3 * time.Second)) // well before tether's 10 s header timeout
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, wiretest.Handshake("/ws"))
	io.WriteString(c, "first bytes")
	if err := cc.Flush(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 101") {
		t.Fatalf("upgrade: %q %v", line, err)
	}
	if err := skipHead(br); err != nil {
		t.Fatal("101 head:", err)
	}
	got := make([]byte, len("first bytes"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "first bytes" {
		t.Fatalf("the bytes sent with the upgrade request: %q %v", got, err)
	}
	// Two more records in one segment, mid-session.
	io.WriteString(c, "one,")
	io.WriteString(c, "two")
	cc.Flush()
	got = make([]byte, len("one,two"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "one,two" {
		t.Fatalf("two records in one segment: %q %v", got, err)
	}
}

// TestIdleWSSHoldsNoBuffer: a wss session through tether's TLS listener
// waits for readability on the socket under the TLS connection, so an idle
// one holds no copy buffer.
func TestIdleWSSHoldsNoBuffer(t *testing.T) {
	_, addr := startTLSServer(t, startEchoNode(t))

	const sessions = 20
	var conns []*tls.Conn
	for range sessions {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, wiretest.Handshake("/ws"))
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		if !strings.HasPrefix(line, "HTTP/1.1 101") {
			t.Fatalf("upgrade: %q", line)
		}
		if skipHead(br) != nil {
			t.Fatal("101 head")
		}
		// A message bigger than one TLS record, echoed back.
		msg := strings.Repeat("m", 40<<10)
		go io.WriteString(c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echo through wss: %v", err)
		}
		conns = append(conns, c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for splice.BufsOut() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := splice.BufsOut(); n != 0 {
		t.Fatalf("%d copy buffers held by %d idle wss sessions, want 0", n, sessions)
	}
	// And they still work after idling.
	for _, c := range conns {
		io.WriteString(c, "ping")
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
			t.Fatalf("after idle: %q %v", b, err)
		}
	}
}
