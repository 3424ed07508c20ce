package proxy

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestPooledConnPassedDeadlines: a pooled node connection keeps whatever
// deadlines its last request left on it (pool.Conn.Put leaves them), long
// passed ones included; the next request on it sets its own before it
// writes or reads, whether its answer comes at once or after the hot window
// (awaitAnswer), and whether it sends a body.
func TestPooledConnPassedDeadlines(t *testing.T) {
	var conns atomic.Int32
	nodeAddr := serveConns(t, func(c net.Conn) {
		defer c.Close()
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			length, slow := 0, false
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if line == "\r\n" {
					break
				}
				name, value, _ := strings.Cut(strings.TrimSpace(line), ":")
				switch strings.ToLower(name) {
				case "content-length":
					length, _ = strconv.Atoi(strings.TrimSpace(value))
				case "x-slow":
					slow = true
				}
			}
			if _, err := io.CopyN(io.Discard, br, int64(length)); err != nil {
				return
			}
			if slow {
				time.Sleep(3 * 50 * time.Millisecond) // past the hot window: the answer is awaited
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	// Every request finds its node connection with both deadlines passed,
	// as a request before it may leave them.
	testHookSendEarly = func(c net.Conn) { c.SetDeadline(time.Unix(1, 0)) }
	t.Cleanup(func() { testHookSendEarly = nil })
	addr := startBenchProxy(t, nodeAddr)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for _, tc := range []struct{ name, req string }{
		{"first", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"fast", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"slow", "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: 1\r\n\r\n"},
		{"body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"},
		{"after", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
	} {
		if _, err := io.WriteString(c, tc.req); err != nil {
			t.Fatal(err)
		}
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
			t.Fatalf("%s: %q %v; want 200", tc.name, line, err)
		}
		if err := skipHead(br); err != nil {
			t.Fatal(err)
		}
		if _, err := br.Discard(2); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("the node saw %d connections; want 1 (pooled and reused)", n)
	}
}
