package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"
)

// echoedHead parses the body of /cobrowse/echo-headers: the request line,
// then the header lines as the node received them.
func echoedHead(t *testing.T, body []byte) (line string, h map[string][]string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(string(body), "\n"), "\n")
	h = map[string][]string{}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			t.Fatalf("echoed header line %q", l)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		h[k] = append(h[k], strings.TrimSpace(v))
	}
	return lines[0], h
}

// TestForwardedHeaders checks the head a node receives: X-Forwarded-For
// appended to the client's, X-Forwarded-Proto, X-Forwarded-Host and
// X-Real-IP set, and the hop-by-hop headers gone.
func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	n := startNode(t, node1, 0)
	tt := startTether(t, []*testNode{n}, healthOff...)

	t.Run("client sent X-Forwarded-For and hop-by-hop headers", func(t *testing.T) {
		c := dialRaw(t, tt.addr).withDeadline(5 * time.Second)
		r := c.do(t, "GET /cobrowse/echo-headers?q=1 HTTP/1.1\r\n"+
			"Host: front.example:8080\r\n"+
			"X-Forwarded-For: 1.2.3.4\r\n"+
			"Connection: close, Foo\r\n"+
			"Foo: must-not-pass\r\n"+
			"Keep-Alive: timeout=5\r\n"+
			"TE: trailers\r\n"+
			"Proxy-Connection: keep-alive\r\n"+
			"Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"+
			"Trailer: X-Checksum\r\n"+
			"X-Keep: yes\r\n"+
			"\r\n")
		if r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
		line, h := echoedHead(t, r.body)
		if line != "GET /cobrowse/echo-headers?q=1 HTTP/1.1" {
			t.Errorf("request line at the node %q", line)
		}
		for k, want := range map[string]string{
			"x-forwarded-for":   "1.2.3.4, 127.0.0.1",
			"x-forwarded-proto": "http",
			"x-forwarded-host":  "front.example:8080",
			"x-real-ip":         "127.0.0.1",
			"host":              "front.example:8080",
			"x-keep":            "yes",
		} {
			if got := h[k]; len(got) != 1 || got[0] != want {
				t.Errorf("%s at the node: %q, want exactly [%q]", k, got, want)
			}
		}
		for _, k := range []string{"foo", "keep-alive", "te", "proxy-connection", "proxy-authorization", "trailer"} {
			if v, ok := h[k]; ok {
				t.Errorf("hop-by-hop header %s reached the node: %q", k, v)
			}
		}
		for _, v := range h["connection"] {
			if strings.Contains(strings.ToLower(v), "foo") {
				t.Errorf("Connection at the node still names foo: %q", v)
			}
		}
		if t.Failed() {
			t.Logf("head at the node:\n%s", r.body)
		}
		// Connection: close from the client ends the client connection.
		expectClosed(t, c, 2*time.Second)
	})

	t.Run("no client X-Forwarded-For", func(t *testing.T) {
		c := dialRaw(t, tt.addr).withDeadline(5 * time.Second)
		r := c.do(t, get("/cobrowse/echo-headers", ""))
		_, h := echoedHead(t, r.body)
		if got := h["x-forwarded-for"]; len(got) != 1 || got[0] != "127.0.0.1" {
			t.Errorf("X-Forwarded-For at the node %q, want [127.0.0.1]", got)
		}
		if got := h["x-forwarded-host"]; len(got) != 1 || got[0] != "example.test" {
			t.Errorf("X-Forwarded-Host at the node %q, want [example.test]", got)
		}
	})

	t.Run("client-sent X-Real-IP and X-Forwarded-Proto are replaced", func(t *testing.T) {
		c := dialRaw(t, tt.addr).withDeadline(5 * time.Second)
		r := c.do(t, get("/cobrowse/echo-headers", "X-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n"))
		_, h := echoedHead(t, r.body)
		for k, want := range map[string]string{"x-real-ip": "127.0.0.1", "x-forwarded-proto": "http", "x-forwarded-host": "example.test"} {
			if got := h[k]; len(got) != 1 || got[0] != want {
				t.Errorf("%s at the node %q, want exactly [%q]", k, got, want)
			}
		}
	})
}

// TestKeepAlivePooling checks that tether reuses its connections to a
// node: many requests, on one client connection or on many, reach the
// node over a handful of connections.
func TestKeepAlivePooling(t *testing.T) {
	t.Parallel()
	n := startNode(t, node1, 0)
	tt := startTether(t, []*testNode{n}, healthOff...)

	before := n.ln.accepted.Load()
	c := dialRaw(t, tt.addr)
	for i := range 200 {
		r := c.do(t, get("/cobrowse/ka", "Cookie: gcbSessionServer=CB_Server_1\r\n"))
		if r.status != 200 || r.get("X-Node") != node1 {
			t.Fatalf("request %d: status %d from %q", i, r.status, r.get("X-Node"))
		}
	}
	if got := n.ln.accepted.Load() - before; got > 4 {
		t.Fatalf("200 requests on one client connection: the node accepted %d connections, want at most 4", got)
	}

	before = n.ln.accepted.Load()
	for i := range 50 {
		c := dialRaw(t, tt.addr).withDeadline(5 * time.Second)
		if r := c.do(t, get("/cobrowse/ka2", "")); r.status != 200 {
			t.Fatalf("client %d: status %d", i, r.status)
		}
		c.Close()
	}
	if got := n.ln.accepted.Load() - before; got > 4 {
		t.Fatalf("50 client connections one after another: the node accepted %d connections, want at most 4", got)
	}
}

// TestLongPollHeldPastFiveSeconds holds a long poll open for 5.5 s before
// the message that answers it is sent on another connection: tether must
// wait for the node, however long it takes (up to --upstream-timeout).
func TestLongPollHeldPastFiveSeconds(t *testing.T) {
	t.Parallel()
	n := startNode(t, node1, 8*time.Second)
	tt := startTether(t, []*testNode{n}, healthOff...)
	const cookie = "Cookie: gcbSessionServer=CB_Server_1\r\n"

	poll := dialRaw(t, tt.addr).withDeadline(15 * time.Second)
	poll.write(t, get("/cobrowse/poll?session=lp1&role=agent", cookie))
	answered := make(chan *response, 1)
	go func() {
		// readResponse may only Fatal in the test goroutine: read the
		// answer here and check it there.
		answered <- readResponseNoFatal(poll)
	}()

	select {
	case r := <-answered:
		t.Fatalf("the poll was answered before any message was sent: %+v", r)
	case <-time.After(5500 * time.Millisecond):
	}
	send := dialRaw(t, tt.addr).withDeadline(5 * time.Second)
	const msg = "message after 5.5 seconds"
	r := send.do(t, "POST /cobrowse/send?session=lp1&role=customer HTTP/1.1\r\nHost: example.test\r\n"+cookie+
		"Content-Type: text/plain\r\nContent-Length: "+strconv.Itoa(len(msg))+"\r\n\r\n"+msg)
	if r.status != 202 {
		t.Fatalf("send: status %d %q", r.status, r.body)
	}
	select {
	case r := <-answered:
		if r == nil || r.status != 200 || string(r.body) != msg {
			t.Fatalf("poll answer %+v, want 200 %q", r, msg)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the poll was not answered within 3s of the send")
	}
	if s := n.Stats(); s.PollTimeouts != 0 || s.Relayed != 1 {
		t.Fatalf("node stats %+v, want one relayed message and no poll timeout", s)
	}
}

// TestLongPollClientHangsUp: a client that hangs up while its long poll
// waits for the node is noticed at once: tether closes the node connection
// and logs 499, long before the node would have answered (8 s here).
func TestLongPollClientHangsUp(t *testing.T) {
	t.Parallel()
	n := startNode(t, node1, 8*time.Second)
	tt := startTether(t, []*testNode{n}, append(healthOff, "--pprof")...)
	const path = "/cobrowse/poll?session=gone&role=agent"
	poll := dialRaw(t, tt.addr)
	poll.write(t, get(path, "Cookie: gcbSessionServer=CB_Server_1\r\n"))
	// Past the hot window the poll waits holding nothing, and a watcher
	// notices the client leave.
	if !tt.waitGoroutine(t, "proxy.watchClient") {
		t.Fatal("no watcher of the client while its poll waits")
	}
	poll.Close()
	lines := tt.waitAccess(t, 1, 3*time.Second, func(l map[string]any) bool { return l["path"] == path })
	if l := lines[0]; l["status"] != 499.0 || l["node"] != node1 {
		t.Fatalf("access line %v, want status 499 from %s", l, node1)
	}
}

// TestLongPollWithPipelinedRequest: a client that sends its next request
// while its long poll waits is not taken for one that left: the poll is
// answered when the node answers, then the next request.
func TestLongPollWithPipelinedRequest(t *testing.T) {
	t.Parallel()
	n := startNode(t, node1, 8*time.Second)
	tt := startTether(t, []*testNode{n}, append(healthOff, "--pprof")...)
	const cookie = "Cookie: gcbSessionServer=CB_Server_1\r\n"
	poll := dialRaw(t, tt.addr).withDeadline(10 * time.Second)
	poll.write(t, get("/cobrowse/poll?session=piped&role=agent", cookie))
	if !tt.waitGoroutine(t, "proxy.watchClient") {
		t.Fatal("no watcher of the client while its poll waits")
	}
	// The next request reaches tether while the watcher watches: bytes, not
	// a hang-up. It is in tether's socket before the send below is even
	// written, so before the node can answer the poll; the watcher, woken
	// by it, must still be watching after it.
	poll.write(t, get("/cobrowse/resource?bytes=10", cookie))
	if !tt.waitGoroutine(t, "proxy.watchClient") {
		t.Fatal("the watcher ended on the pipelined request")
	}
	const msg = "the poll's answer"
	send := dialRaw(t, tt.addr).withDeadline(5 * time.Second)
	if r := send.do(t, "POST /cobrowse/send?session=piped&role=customer HTTP/1.1\r\nHost: example.test\r\n"+cookie+
		"Content-Type: text/plain\r\nContent-Length: "+strconv.Itoa(len(msg))+"\r\n\r\n"+msg); r.status != 202 {
		t.Fatalf("send: status %d %q", r.status, r.body)
	}
	if r := poll.readResponse(t, false); r.status != 200 || string(r.body) != msg {
		t.Fatalf("poll: %d %q, want 200 %q", r.status, r.body, msg)
	}
	if r := poll.readResponse(t, false); r.status != 200 || len(r.body) != 10 {
		t.Fatalf("pipelined request: %d, %d bytes, want 200 and 10", r.status, len(r.body))
	}
}

// readResponseNoFatal reads one answer (Content-Length bodies only) and
// returns nil on any error; it is safe to call off the test goroutine.
func readResponseNoFatal(c *rawConn) *response {
	r, err := parseResponse(c.br, false)
	if err != nil {
		return nil
	}
	return r
}

// TestPipelining sends several requests in one write and checks that the
// answers come back complete and in order.
func TestPipelining(t *testing.T) {
	t.Parallel()
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2}, healthOff...)

	t.Run("three requests in one write", func(t *testing.T) {
		c := dialRaw(t, tt.addr).withDeadline(5 * time.Second)
		sum := sha256.Sum256([]byte("hello"))
		c.write(t, get("/cobrowse/resource?bytes=7", "")+
			get("/cobrowse/echo-headers", "Cookie: gcbSessionServer=CB_Server_2\r\n")+
			"POST /cobrowse/upload HTTP/1.1\r\nHost: example.test\r\nContent-Length: 5\r\n\r\nhello")
		if r := c.readResponse(t, false); r.status != 200 || string(r.body) != "0123456" {
			t.Fatalf("answer 1: status %d body %q, want 200 %q", r.status, r.body, "0123456")
		}
		r := c.readResponse(t, false)
		if line, _ := echoedHead(t, r.body); r.status != 200 || line != "GET /cobrowse/echo-headers HTTP/1.1" || r.get("X-Node") != node2 {
			t.Fatalf("answer 2: status %d from %q, request line %q", r.status, r.get("X-Node"), line)
		}
		want := "5 " + hex.EncodeToString(sum[:])
		if r := c.readResponse(t, false); r.status != 200 || string(r.body) != want {
			t.Fatalf("answer 3: status %d body %q, want 200 %q", r.status, r.body, want)
		}
	})

	t.Run("HEAD then GET", func(t *testing.T) {
		c := dialRaw(t, tt.addr).withDeadline(5 * time.Second)
		for _, path := range []string{"/cobrowse/resource?bytes=1000", "/cobrowse/resource?bytes=1000&chunked=1"} {
			r := c.do(t, "HEAD "+path+" HTTP/1.1\r\nHost: example.test\r\n\r\n")
			if r.status != 200 {
				t.Fatalf("HEAD %s: status %d", path, r.status)
			}
			r = c.do(t, get("/cobrowse/resource?bytes=5", ""))
			if r.status != 200 || string(r.body) != "01234" {
				t.Fatalf("GET after HEAD %s: status %d body %q", path, r.status, r.body)
			}
		}
	})

	t.Run("HEAD and GET in one write", func(t *testing.T) {
		c := dialRaw(t, tt.addr).withDeadline(5 * time.Second)
		c.write(t, "HEAD /cobrowse/resource?bytes=1000 HTTP/1.1\r\nHost: example.test\r\n\r\n"+
			"HEAD /cobrowse/resource?bytes=1000&chunked=1 HTTP/1.1\r\nHost: example.test\r\n\r\n"+
			get("/cobrowse/resource?bytes=5", ""))
		for i := range 2 {
			if r := c.readResponse(t, true); r.status != 200 {
				t.Fatalf("HEAD %d: status %d", i, r.status)
			}
		}
		if r := c.readResponse(t, false); r.status != 200 || string(r.body) != "01234" {
			t.Fatalf("GET after two HEADs: status %d body %q", r.status, r.body)
		}
	})
}
