//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSendBeforeRead checks the request-then-answer read of rawIO: the
// bytes go out inside the read, whose answer comes back; bytes that do not
// fit the socket buffers are handed back (errPreUnsent, unsent) without loss
// or repetition; a failed write reads as a write error; a read that ends
// before trying (its deadline passed) hands all of them back.
func TestSendBeforeRead(t *testing.T) {
	lb := newPairMaker(t)

	t.Run("request and answer", func(t *testing.T) {
		d, b := rawPair(t, lb)
		for i := range 50 { // the node answers after the request, each time
			req := []byte("GET /" + string(rune('a'+i%26)) + " HTTP/1.1\r\n\r\n")
			go func() {
				p := make([]byte, len(req))
				if _, err := io.ReadFull(b, p); err == nil && bytes.Equal(p, req) {
					time.Sleep(time.Millisecond)
					b.Write([]byte("answer"))
				}
			}()
			d.raw.sendBeforeRead(req)
			p := make([]byte, 64)
			n, err := d.Read(p)
			if err != nil || string(p[:n]) != "answer" {
				t.Fatalf("round %d: Read = %q, %v; want the answer", i, p[:n], err)
			}
			if rest := d.raw.unsent(); rest != nil {
				t.Fatalf("round %d: %d bytes unsent", i, len(rest))
			}
		}
	})

	t.Run("more than the socket takes", func(t *testing.T) {
		d, b := rawPair(t, lb)
		d.Conn.(*net.TCPConn).SetWriteBuffer(16 << 10)
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
		d.raw.sendBeforeRead(big)
		_, err := d.Read(make([]byte, 64))
		rest := d.raw.unsent()
		if err != errPreUnsent || len(rest) == 0 || len(rest) >= len(big) {
			t.Fatalf("Read = %v with %d of %d bytes unsent; want errPreUnsent and part unsent", err, len(rest), len(big))
		}
		got := make(chan []byte, 1)
		go func() {
			b.SetReadDeadline(time.Now().Add(10 * time.Second))
			p, _ := io.ReadAll(io.LimitReader(b, int64(len(big))))
			got <- p
		}()
		if _, err := d.Write(rest); err != nil {
			t.Fatal(err)
		}
		if p := <-got; !bytes.Equal(p, big) {
			t.Fatalf("the peer got %d bytes, not the %d sent", len(p), len(big))
		}
	})

	t.Run("the peer is gone", func(t *testing.T) {
		d, b := rawPair(t, lb)
		b.SetLinger(0)
		b.Close() // a reset
		time.Sleep(20 * time.Millisecond)
		d.raw.sendBeforeRead([]byte("GET / HTTP/1.1\r\n\r\n"))
		_, err := d.Read(make([]byte, 64))
		if rest := d.raw.unsent(); rest != nil {
			t.Fatalf("%d bytes unsent after %v", len(rest), err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || !isConnGone(err) {
			t.Fatalf("Read = %v; want a *net.OpError the retry logic reads as a connection gone", err)
		}
		if errors.Is(err, syscall.EPIPE) && oe.Op != "write" {
			t.Fatalf("a failed write reads as %q", oe.Op)
		}
	})

	t.Run("deadline passed before the read", func(t *testing.T) {
		d, _ := rawPair(t, lb)
		d.setReadLimit(-time.Second)
		req := []byte("GET / HTTP/1.1\r\n\r\n")
		d.raw.sendBeforeRead(req)
		_, err := d.Read(make([]byte, 64))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read = %v; want the deadline", err)
		}
		if rest := d.raw.unsent(); !bytes.Equal(rest, req) {
			t.Fatalf("unsent %q; want all of %q", rest, req)
		}
	})
}

// rawPair is a loopback pair: its first side in a deadlineConn with raw I/O,
// the other as is. Cleanup closes both.
func rawPair(t *testing.T, lb *pairMaker) (*deadlineConn, *net.TCPConn) {
	a, b := lb.pair(t)
	t.Cleanup(func() { a.Close(); b.Close() })
	d := new(deadlineConn)
	d.reset(a, rawConnOf(a), 5*time.Second, 5*time.Second)
	return d, b
}

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
