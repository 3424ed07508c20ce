package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
)

// TestManyFieldsRefused: 5,000 small fields, well within
// --max-header-bytes, get 431 through a Server.
func TestManyFieldsRefused(t *testing.T) {
	node := startRawNode(t, benchAnswer)
	_, addr := startServer(t, oneNode(node.ln.Addr().String()), false)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	head := wiretest.ManyFields(5000)
	if len(head) >= 64<<10 {
		t.Fatalf("the head is %d bytes: not under --max-header-bytes", len(head))
	}
	io.WriteString(c, head)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 431 || !resp.Close {
		t.Fatalf("status %d (close %v), want 431 and close", resp.StatusCode, resp.Close)
	}
}

// TestAbsoluteFormForwarded: an absolute-form target reaches the node in
// origin form, its authority in Host and X-Forwarded-Host.
func TestAbsoluteFormForwarded(t *testing.T) {
	seen := make(chan *http.Request, 1)
	node := serveConns(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			seen <- req
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
	})
	_, addr := startServer(t, oneNode(node), false)
	for _, c := range []struct{ line, host, target string }{
		{"GET http://example.test:8080/p/q?a=1 HTTP/1.1\r\nHost: other.test", "example.test:8080", "/p/q?a=1"},
		{"GET HTTPS://example.test HTTP/1.1\r\nHost: example.test", "example.test", "/"},
		{"GET http://[::1]:9?x=1 HTTP/1.1\r\nHost: a", "[::1]:9", "/?x=1"},
		{"GET http://example.test/ HTTP/1.0", "example.test", "/"},
	} {
		cc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		cc.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(cc, c.line+"\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(cc), nil)
		cc.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%q: %v %v", c.line, resp, err)
		}
		req := <-seen
		if req.RequestURI != c.target || req.Host != c.host || req.Header.Get("X-Forwarded-Host") != c.host {
			t.Errorf("%q reached the node as %s with Host %q, X-Forwarded-Host %q; want %s, %q", c.line, req.RequestURI, req.Host, req.Header.Get("X-Forwarded-Host"), c.target, c.host)
		}
	}
}

// bodyNode reads a request head and then body bytes until its connection
// ends, never answering; closed receives the bytes it got when it ends.
func bodyNode(t *testing.T) (addr string, closed chan int) {
	closed = make(chan int, 4)
	addr = serveConns(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		if skipHead(br) != nil {
			return
		}
		n, _ := io.Copy(io.Discard, br)
		closed <- int(n)
	})
	return addr, closed
}

// TestBodyMinRate: a request body trickling in below --body-min-rate is cut
// once its grace (--body-timeout) has passed, though each wait is far
// shorter than --body-timeout: 408, and the node connection closed. A body
// above the rate passes however long it takes.
func TestBodyMinRate(t *testing.T) {
	const (
		timeout = 200 * time.Millisecond
		rate    = 200 // bytes a second
	)
	trickle := func(t *testing.T, addr string, every time.Duration, per, total int, stop chan struct{}) (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: "+strconv.Itoa(total)+"\r\n\r\n")
		go func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			chunk := strings.Repeat("b", per)
			for sent := 0; sent < total; sent += per {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := io.WriteString(c, chunk); err != nil {
					return
				}
			}
		}()
		return c, bufio.NewReader(c)
	}

	t.Run("below the rate", func(t *testing.T) {
		node, closed := bodyNode(t)
		cfg := oneNode(node)
		cfg.BodyTimeout, cfg.BodyMinRate = timeout, rate
		_, addr := startServer(t, cfg, false)
		stop := make(chan struct{})
		defer close(stop)
		// 50 bytes a second, a byte every 20 ms: cut after about 0.27 s
		// (200 ms grace + n/200 s < n × 20 ms).
		start := time.Now()
		_, br := trickle(t, addr, 20*time.Millisecond, 1, 100000, stop)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no answer after %v: %v", time.Since(start), err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 408 || !resp.Close {
			t.Fatalf("status %d (close %v) after %v, want 408 and close", resp.StatusCode, resp.Close, time.Since(start))
		}
		if strings.Contains(string(body), "head") {
			t.Errorf("the 408 for a slow body says %q: its head came whole", body)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("408 after %v, want it within a second or so", d)
		}
		select {
		case n := <-closed:
			if n == 0 {
				t.Fatal("the node got none of the body")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the node connection is still open after the 408")
		}
	})

	t.Run("above the rate", func(t *testing.T) {
		answered := make(chan int, 1)
		node := serveConns(t, func(c net.Conn) {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			n, _ := io.Copy(io.Discard, req.Body)
			answered <- int(n)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		})
		cfg := oneNode(node)
		cfg.BodyTimeout, cfg.BodyMinRate = timeout, rate
		_, addr := startServer(t, cfg, false)
		stop := make(chan struct{})
		defer close(stop)
		// 1,000 bytes a second for 0.6 s, three times the grace.
		_, br := trickle(t, addr, 20*time.Millisecond, 20, 600, stop)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || <-answered != 600 {
			t.Fatalf("status %d, want 200 with the whole body at the node", resp.StatusCode)
		}
	})
}

// TestRefusalLingers: a client whose head is refused while it is still
// sending (431 for a head over --max-header-bytes, 400 for a bad
// handshake, more bytes behind each) reads the whole answer and then the
// end of the stream, not a reset: tether reads and drops what is left
// before it closes.
func TestRefusalLingers(t *testing.T) {
	node := startRawNode(t, benchAnswer)
	cfg := oneNode(node.ln.Addr().String())
	cfg.MaxHeaderBytes = 4096
	_, addr := startServer(t, cfg, false)
	more := strings.Repeat("m", 32<<10)
	for _, c := range []struct {
		name, send, status string
	}{
		{"431", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("v", 8<<10) + more, "431"},
		{"400", strings.Replace(wiretest.Handshake("/ws"), wiretest.Key, "x", 1) + more, "400"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			cc.SetDeadline(time.Now().Add(5 * time.Second))
			// All of it in the kernel's buffers before tether answers:
			// tether reads the head's first bytes only.
			if _, err := io.WriteString(cc, c.send); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(cc)
			if errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("reset after %d bytes of the answer (%q)", len(got), got)
			}
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(got))), nil)
			if err != nil || resp.Status[:3] != c.status {
				t.Fatalf("answer %q %v, want %s", got, err, c.status)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil || int64(len(body)) != resp.ContentLength {
				t.Fatalf("answer body %q %v, want %d bytes", body, err, resp.ContentLength)
			}
		})
	}
}

// TestLingerTimeout: a refused client that goes on sending is read and
// dropped for --linger-timeout, then closed: not sooner (its answer would
// be lost to a reset), not later. tether's half-close ends the client's
// reading at once; its writes fail once the linger is over.
func TestLingerTimeout(t *testing.T) {
	node := startRawNode(t, benchAnswer)
	cfg := oneNode(node.ln.Addr().String())
	cfg.MaxHeaderBytes = 4096
	cfg.LingerTimeout = 250 * time.Millisecond
	_, addr := startServer(t, cfg, false)
	cc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.SetDeadline(time.Now().Add(5 * time.Second))
	// Timed from before the request: the linger cannot begin sooner, so
	// the lower bound holds however slowly the answer comes.
	start := time.Now()
	if _, err := io.WriteString(cc, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: "+strings.Repeat("v", 8<<10)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(cc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 431 {
		t.Fatalf("answer %v, %v; want 431", resp, err)
	}
	// A byte every 10 ms until a write fails (5 s at most).
	var failed time.Duration
	for time.Since(start) < 5*time.Second {
		time.Sleep(10 * time.Millisecond)
		if _, err := cc.Write([]byte("m")); err != nil {
			failed = time.Since(start)
			break
		}
	}
	if failed < 250*time.Millisecond || failed > 850*time.Millisecond {
		t.Fatalf("writes failed %v after the request (0: never), want about 250 ms after its answer (the default is 1 s)", failed)
	}
}
