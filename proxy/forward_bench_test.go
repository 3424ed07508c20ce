package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/internal/syscount"
	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/tlsterm"
)

// rawNode answers every request head it reads with the same fixed answer,
// allocating nothing per request, so a benchmark's allocations are the
// proxy's.
type rawNode struct {
	ln     net.Listener
	answer []byte
}

func startRawNode(tb testing.TB, answer string) *rawNode {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	n := &rawNode{ln: ln, answer: []byte(answer)}
	go n.acceptLoop()
	tb.Cleanup(func() { ln.Close() })
	return n
}

func (n *rawNode) acceptLoop() {
	for {
		c, err := n.ln.Accept()
		if err != nil {
			return
		}
		go n.serve(c)
	}
}

// serve answers each head (up to its blank line) on c.
func (n *rawNode) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 128<<10)
	for {
		if err := skipHead(br); err != nil {
			return
		}
		if _, err := c.Write(n.answer); err != nil {
			return
		}
	}
}

// skipHead reads through the next "\r\n\r\n".
func skipHead(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) == 2 && line[0] == '\r' {
			return nil
		}
	}
}

const benchAnswer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Node: CB_Server_1\r\nContent-Length: 13\r\n\r\nhello, world\n"

const benchRequest = "GET /cobrowse/resource?session=abc HTTP/1.1\r\n" +
	"Host: cobrowse.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Cookie: _ga=GA1.2.1234567890.1234567890; gcbSessionServer=CB_Server_1; theme=dark\r\n" +
	"X-Forwarded-For: 203.0.113.7\r\n" +
	"\r\n"

// startBenchProxy runs a Server in front of one raw node and returns its
// address.
func startBenchProxy(tb testing.TB, nodeAddr string) string {
	_, addr := startServer(tb, oneNode(nodeAddr), false)
	return addr
}

// oneNode is the Config of a Server in front of CB_Server_1 at addr, with
// no health checks.
func oneNode(addr string) Config {
	return Config{Pool: pool.Config{Nodes: []pool.NodeConfig{{Name: "CB_Server_1", URL: "http://" + addr}}}}
}

// startServer runs a Server with cfg on a loopback listener (its TLS one,
// with a self-signed certificate, when tlsOn) and returns it and the
// listener's address. Cleanup shuts it down (a test may do so first).
func startServer(tb testing.TB, cfg Config, tlsOn bool) (*Server, string) {
	tb.Helper()
	if tlsOn {
		cfg.TLS = tlsterm.Config{Listen: "127.0.0.1:0", SelfSigned: true}
	}
	return serveWith(tb, cfg, zerolog.Nop(), zerolog.Nop(), tlsOn)
}

// serveWith runs a Server for cfg with these loggers on a loopback port
// (its TLS listener's with tlsOn) until the test ends, and returns it with
// its address.
func serveWith(tb testing.TB, cfg Config, log, access zerolog.Logger, tlsOn bool) (*Server, string) {
	tb.Helper()
	s, err := New(cfg, log, access)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	if tlsOn {
		go s.ServeTLS(ln)
	} else {
		go s.Serve(ln)
	}
	tb.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, ln.Addr().String()
}

// serveConns accepts connections on a loopback port and runs handle on each
// (handle closes it); it returns the address. Cleanup closes the listener.
func serveConns(tb testing.TB, handle func(net.Conn)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln.Addr().String()
}

// roundTrips sends the request on one keep-alive connection b.N times and
// reads each fixed-size answer. Besides allocs/op it reports syscalls/op
// (on Linux, where perf events are allowed): the system calls every thread
// of the test process entered per request, so the benchmark's client and
// node's as well as the proxy's; BenchmarkForwardDirect's figure is theirs
// alone.
func roundTrips(b *testing.B, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	roundTrip := benchRoundTrip(b, c)
	b.ReportAllocs()
	sc := syscount.Start(b)
	for b.Loop() {
		roundTrip()
	}
	sc.Report(b)
}

// benchRoundTrip returns a function that sends benchRequest on c and reads
// the answer (benchAnswer's head and 13-byte body), failing tb on an error.
func benchRoundTrip(tb testing.TB, c net.Conn) func() {
	req := []byte(benchRequest)
	br := bufio.NewReaderSize(c, 16<<10)
	body := make([]byte, 13)
	return func() {
		if _, err := c.Write(req); err != nil {
			tb.Fatal(err)
		}
		if err := skipHead(br); err != nil {
			tb.Fatal(err)
		}
		if _, err := io.ReadFull(br, body); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkForwardKeepAlive is the per-request path through tether: head
// read and checked, route by cookie, forward over a pooled connection,
// answer relayed.
func BenchmarkForwardKeepAlive(b *testing.B) {
	node := startRawNode(b, benchAnswer)
	roundTrips(b, startBenchProxy(b, node.ln.Addr().String()))
}

// BenchmarkForwardDirect is the baseline: the same client talking to the
// node with no proxy between.
func BenchmarkForwardDirect(b *testing.B) {
	node := startRawNode(b, benchAnswer)
	roundTrips(b, node.ln.Addr().String())
}

// BenchmarkForwardNetHTTP is net/http's ReverseProxy doing the same job, for
// scale.
func BenchmarkForwardNetHTTP(b *testing.B) {
	node := startRawNode(b, benchAnswer)
	u, _ := url.Parse("http://" + node.ln.Addr().String())
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = nil
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	roundTrips(b, ln.Addr().String())
}

// TestLargeHeadsGrowTheReader: heads larger than the first reader (but
// within --max-header-bytes) pass both ways; larger ones get 431.
func TestLargeHeadsGrowTheReader(t *testing.T) {
	big := strings.Repeat("v", 20<<10)
	node := startRawNode(t, "HTTP/1.1 200 OK\r\nX-Big: "+big+"\r\nContent-Length: 2\r\n\r\nok")
	addr := startBenchProxy(t, node.ln.Addr().String())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 64<<10)
	for range 3 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: "+big+"\r\n\r\n")
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
			t.Fatalf("large head: %q %v", line, err)
		}
		gotBig := false
		for {
			h, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if h == "\r\n" {
				break
			}
			gotBig = gotBig || strings.HasPrefix(h, "X-Big: "+big)
		}
		if !gotBig {
			t.Fatal("the node's large header did not pass")
		}
		if _, err := br.Discard(2); err != nil {
			t.Fatal(err)
		}
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: "+strings.Repeat("v", 70<<10)+"\r\n\r\n")
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 431") {
		t.Fatalf("oversized head: %q, want 431", line)
	}
}
