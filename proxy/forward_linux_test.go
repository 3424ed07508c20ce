//go:build linux

package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestForwardHeadPastSocketBuffers: a request head that does not fit the
// node socket's buffers at once (a 200 KB head, a send buffer made small
// through testHookSendEarly as loopback's grow to megabytes, a node that
// reads late through a small receive buffer) goes out whole after the read
// that was to carry it hands the rest back, and the answer comes through.
func TestForwardHeadPastSocketBuffers(t *testing.T) {
	ln, err := smallBufListener(t)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("p", 200<<10)
	heads := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		time.Sleep(200 * time.Millisecond) // the head waits in tether's socket meanwhile
		c.SetDeadline(time.Now().Add(10 * time.Second))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			heads <- err.Error()
			return
		}
		heads <- req.Header.Get("X-Pad")
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}()
	resp, _ := bigHead(t, ln.Addr().String(), pad, nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("answer %d %q", resp.StatusCode, body)
	}
	if got := <-heads; got != pad {
		t.Fatalf("the node read X-Pad of %d bytes (%.60q), want %d", len(got), got, len(pad))
	}
}

// TestForwardHeadWriteTimeout: a head that a node never takes fails as a
// write, after --write-timeout (504), not as an answer awaited for the
// upstream timeout.
func TestForwardHeadWriteTimeout(t *testing.T) {
	ln, err := smallBufListener(t)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c // never read
		}
	}()
	t.Cleanup(func() {
		select {
		case c := <-accepted:
			c.Close()
		default:
		}
	})
	resp, d := bigHead(t, ln.Addr().String(), strings.Repeat("p", 900<<10), func(cfg *Config) {
		cfg.WriteTimeout = 300 * time.Millisecond
		cfg.UpstreamTimeout = 20 * time.Second
	})
	resp.Body.Close()
	if resp.StatusCode != 504 || d > 10*time.Second {
		t.Fatalf("answer %d after %v; want 504 after the write timeout, well before the upstream one", resp.StatusCode, d)
	}
}

// bigHead sends one GET with an X-Pad header of pad through a Server in front
// of node (cfg changed by set when set), whose node connections get a 4 KiB
// send buffer (testHookSendEarly), and returns the answer and how long it
// took.
func bigHead(t *testing.T, node, pad string, set func(*Config)) (*http.Response, time.Duration) {
	testHookSendEarly = func(c net.Conn) { c.(*net.TCPConn).SetWriteBuffer(4096) }
	t.Cleanup(func() { testHookSendEarly = nil }) // after the server's Shutdown (cleanups run last first)
	cfg := oneNode(node)
	cfg.MaxHeaderBytes = 1 << 20
	if set != nil {
		set(&cfg)
	}
	_, addr := startServer(t, cfg, false)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	start := time.Now()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: "+pad+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp, time.Since(start)
}

// smallBufListener listens on loopback with a 4 KiB receive buffer for its
// connections: a node that reads late or never soon stops taking bytes.
func smallBufListener(t *testing.T) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err == nil {
		t.Cleanup(func() { ln.Close() })
	}
	return ln, err
}
