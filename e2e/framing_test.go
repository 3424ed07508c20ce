package e2e

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// smuggled follows every bad request in the same write: if tether read the
// bad request's framing another way than the node would, this is the
// request that a node would see next.
const smuggled = "GET /cobrowse/smuggled HTTP/1.1\r\nHost: example.test\r\n\r\n"

// refuse sends raw bytes on a new connection and checks that tether
// answers status and closes the connection.
func refuse(t *testing.T, addr, req string, status int) {
	t.Helper()
	c := dialRaw(t, addr).withDeadline(5 * time.Second)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte(req))
		werr <- err
	}()
	r, err := parseResponse(c.br, false)
	if err != nil {
		t.Fatalf("want %d, read: %v", status, err)
	}
	if r.status != status {
		t.Fatalf("status %d, want %d (body %q)", r.status, status, r.body)
	}
	if r.get("X-Node") != "" {
		t.Fatalf("a node answered (X-Node %q): the request was forwarded", r.get("X-Node"))
	}
	expectClosed(t, c, 2*time.Second)
	<-werr // a write error is fine: tether may close before reading it all
}

// TestBadHeads checks tether's answers to heads it cannot use: garbage,
// an oversized head, a head that arrives too slowly. None reaches the node.
func TestBadHeads(t *testing.T) {
	t.Parallel()
	n := startNode(t, node1, 0)
	tt := startTether(t, []*testNode{n}, "--health-interval", "1h", "--header-timeout", "1s")

	t.Run("random bytes", func(t *testing.T) {
		r := rand.New(rand.NewPCG(42, 42))
		b := make([]byte, 512)
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		refuse(t, tt.addr, string(b)+"\r\n\r\n", 400)
	})
	t.Run("TLS client hello on the plain port", func(t *testing.T) {
		hello := "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + strings.Repeat("\x5a", 32) + "\x00\x00\x20\xc0\x2b\xc0\x2f\r\n\r\n"
		refuse(t, tt.addr, hello, 400)
	})
	t.Run("70 KiB header", func(t *testing.T) {
		refuse(t, tt.addr, "GET /cobrowse/x HTTP/1.1\r\nHost: example.test\r\nX-Big: "+strings.Repeat("a", 70<<10)+"\r\n\r\n", 431)
	})
	t.Run("70 KiB of header lines", func(t *testing.T) {
		refuse(t, tt.addr, "GET /cobrowse/x HTTP/1.1\r\nHost: example.test\r\n"+strings.Repeat("X-Many: 0123456789abcdef0123456789abcdef\r\n", 70<<10/40)+"\r\n", 431)
	})
	t.Run("head dribbled past --header-timeout", func(t *testing.T) {
		c := dialRaw(t, tt.addr).withDeadline(5 * time.Second)
		start := time.Now()
		c.write(t, "GET /cobrowse/x HTTP/1.1\r\nHost: example.test\r\n")
		answered := make(chan *response, 1)
		go func() { answered <- readResponseNoFatal(c) }()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case r := <-answered:
				el := time.Since(start)
				if r == nil || r.status != 408 {
					t.Fatalf("after %v: answer %+v, want 408", el, r)
				}
				if el < 900*time.Millisecond || el > 2500*time.Millisecond {
					t.Fatalf("408 after %v, want about 1s (--header-timeout 1s)", el)
				}
				expectClosed(t, c, 2*time.Second)
				return
			case <-tick.C:
				if i >= 40 {
					t.Fatalf("no answer after %v of dribbling a head", time.Since(start))
				}
				// Errors are expected once tether closed: the answer is
				// still read above.
				c.Write([]byte("X-D: 1\r\n"))
			}
		}
	})
	if got := n.Stats().Requests; got != 0 {
		t.Fatalf("the node received %d requests, want none", got)
	}
}

// TestAmbiguousFramingRefused sends each request whose framing two parsers
// could read differently, followed by a second request in the same write.
// tether must answer 400, close the connection, and forward nothing.
func TestAmbiguousFramingRefused(t *testing.T) {
	t.Parallel()
	n := startNode(t, node1, 0)
	tt := startTether(t, []*testNode{n}, healthOff...)
	const post = "POST /cobrowse/upload HTTP/1.1\r\nHost: example.test\r\n"

	cases := []struct{ name, req string }{
		{"Content-Length and Transfer-Encoding",
			post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"Transfer-Encoding and Content-Length",
			post + "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggled},
		{"two differing Content-Lengths",
			post + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" + smuggled},
		{"Content-Length list",
			post + "Content-Length: 5, 6\r\n\r\nhello!" + smuggled},
		{"Transfer-Encoding gzip, chunked",
			post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"Transfer-Encoding chunked, identity",
			post + "Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + smuggled},
		{"Transfer-Encoding identity",
			post + "Transfer-Encoding: identity\r\n\r\n" + smuggled},
		{"invalid chunk size",
			post + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" + smuggled},
		{"header name with a space",
			"GET /cobrowse/x HTTP/1.1\r\nHost: example.test\r\nFoo Bar: x\r\n\r\n" + smuggled},
		{"space before the colon",
			post + "Content-Length : 5\r\n\r\nhello" + smuggled},
		{"control byte in a header name",
			"GET /cobrowse/x HTTP/1.1\r\nHost: example.test\r\nFo\x01o: x\r\n\r\n" + smuggled},
		{"obs-fold line",
			"GET /cobrowse/x HTTP/1.1\r\nHost: example.test\r\nX-A: a\r\n folded\r\n\r\n" + smuggled},
		{"bare LF line ends",
			"GET /cobrowse/x HTTP/1.1\nHost: example.test\n\n" + smuggled},
		{"one bare LF line end",
			"GET /cobrowse/x HTTP/1.1\r\nHost: example.test\nX-A: a\r\n\r\n" + smuggled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := n.Stats().Requests
			defer func() { // checked also when refuse fails
				if got := n.Stats().Requests - before; got != 0 {
					t.Errorf("the node received %d requests, want none", got)
				}
			}()
			refuse(t, tt.addr, tc.req, 400)
		})
	}
}
