package bench

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

// testNode is a node serving on a loopback port chosen at run time.
type testNode struct {
	*Node
	addr   string // host:port
	url    string // http://host:port
	served chan error
	client *http.Client
	once   sync.Once
}

func startNode(t testing.TB, cfg NodeConfig) *testNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNode{
		Node:   NewNode(cfg, zerolog.Nop()),
		addr:   ln.Addr().String(),
		served: make(chan error, 1),
		client: &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second},
	}
	tn.url = "http://" + tn.addr
	go tn.serve(ln)
	t.Cleanup(func() { tn.stop(t) })
	return tn
}

func (tn *testNode) serve(ln net.Listener) { tn.served <- tn.Serve(ln) }

// stop closes the node and checks that Serve returned nil.
func (tn *testNode) stop(t testing.TB) {
	t.Helper()
	tn.once.Do(func() { tn.stopOnce(t) })
}

func (tn *testNode) stopOnce(t testing.TB) {
	t.Helper()
	tn.client.CloseIdleConnections()
	if err := tn.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-tn.served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Serve did not return after Close")
	}
}

// do sends a request with an optional cookie header and returns the answer
// with its body read.
func (tn *testNode) do(t testing.TB, method, path, cookie string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, tn.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := tn.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, string(b)
}

func (tn *testNode) dialWS(t testing.TB, query, cookie string) *websocket.Conn {
	t.Helper()
	c, resp, err := tn.tryDialWS(query, cookie)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial ws %s: %v (status %d)", query, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (tn *testNode) tryDialWS(query, cookie string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if cookie != "" {
		h.Set("Cookie", cookie)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, resp, err := d.Dial("ws://"+tn.addr+PathWS+"?"+query, h)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if c != nil {
		c.SetReadLimit(MaxMessageBytes)
	}
	return c, resp, err
}

func TestNodeHealth(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})

	check := func(want int) {
		t.Helper()
		resp, _ := n.do(t, "GET", PathHealth, "", nil)
		if resp.StatusCode != want {
			t.Fatalf("health: status %d, want %d", resp.StatusCode, want)
		}
		if got := resp.Header.Get(HeaderNode); got != "CB_1" {
			t.Errorf("health: X-Node %q", got)
		}
		if sc := resp.Header.Get("Set-Cookie"); sc != "gcbSessionServer=CB_1; Path=/" {
			t.Errorf("health without a cookie: Set-Cookie %q, want the node's", sc)
		}
	}
	check(200)
	for _, tc := range []struct {
		method, query  string
		status, health int
	}{
		{"POST", "?up=0", 200, 503},
		{"POST", "?up=1", 200, 200},
		{"POST", "?up=maybe", 400, 200},
		{"GET", "?up=0", 405, 200},
	} {
		resp, _ := n.do(t, tc.method, PathCtlHealth+tc.query, "", nil)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.query, resp.StatusCode, tc.status)
		}
		check(tc.health)
	}
	n.SetHealthy(false)
	check(503)
	// A foreign cookie does not matter to health checks.
	resp, _ := n.do(t, "POST", PathCtlHealth+"?up=1", DefaultCookie+"=CB_2", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("switch with a foreign cookie: %d", resp.StatusCode)
	}
	check(200)
}

func TestNodeCookieRules(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	custom := startNode(t, NodeConfig{Name: "CB_1", Cookie: "route"})

	for _, tc := range []struct {
		name      string
		node      *testNode
		cookie    string
		status    int
		setCookie string
		ended     bool
	}{
		{"no cookie", n, "", 200, "gcbSessionServer=CB_1; Path=/", false},
		{"own bare", n, "gcbSessionServer=CB_1", 200, "", false},
		{"own dotted", n, "gcbSessionServer=x.CB_1", 200, "", false},
		{"own dotted empty prefix", n, "gcbSessionServer=.CB_1", 200, "", false},
		{"own among others", n, "a=b; gcbSessionServer=route.CB_1; c=d", 200, "", false},
		{"foreign bare", n, "gcbSessionServer=CB_2", 409, "gcbSessionServer=CB_1; Path=/", true},
		{"foreign dotted", n, "gcbSessionServer=x.CB_2", 409, "gcbSessionServer=CB_1; Path=/", true},
		{"name is a prefix", n, "gcbSessionServer=CB_11", 409, "gcbSessionServer=CB_1; Path=/", true},
		{"suffix without dot", n, "gcbSessionServer=xCB_1", 409, "gcbSessionServer=CB_1; Path=/", true},
		{"other cookie only", n, "route=CB_2", 200, "gcbSessionServer=CB_1; Path=/", false},
		{"custom name, none", custom, "gcbSessionServer=CB_2", 200, "route=CB_1; Path=/", false},
		{"custom name, foreign", custom, "route=CB_2", 409, "route=CB_1; Path=/", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/", PathResource + "?bytes=10", PathEchoHeaders} {
				resp, _ := tc.node.do(t, "GET", path, tc.cookie, nil)
				if resp.StatusCode != tc.status {
					t.Errorf("%s: status %d, want %d", path, resp.StatusCode, tc.status)
				}
				if got := resp.Header.Get(HeaderNode); got != "CB_1" {
					t.Errorf("%s: X-Node %q", path, got)
				}
				if got := resp.Header.Get("Set-Cookie"); got != tc.setCookie {
					t.Errorf("%s: Set-Cookie %q, want %q", path, got, tc.setCookie)
				}
				if got := resp.Header.Get(HeaderSessionEnded) == "1"; got != tc.ended {
					t.Errorf("%s: X-Session-Ended %v, want %v", path, got, tc.ended)
				}
			}
		})
	}
	if got := n.Stats().Sessions409; got != 4*3 {
		t.Errorf("Sessions409 = %d, want 12", got)
	}
}

func TestNodeDefaultPage(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_7"})
	resp, body := n.do(t, "GET", "/", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "CB_7") {
		t.Fatalf("GET /: %d %q", resp.StatusCode, body)
	}
}

func TestNodeResource(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	for _, size := range []int{0, 1, 63, 64, 1024, 100_000, 3<<20 + 5} {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprint(size, chunked), func(t *testing.T) {
				path := fmt.Sprintf("%s?bytes=%d", PathResource, size)
				if chunked {
					path += "&chunked=1"
				}
				resp, body := n.do(t, "GET", path, "", nil)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
				want := make([]byte, size)
				Pattern(want, 0)
				if body != string(want) {
					t.Fatalf("body: %d bytes, want %d pattern bytes", len(body), size)
				}
				isChunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"
				if chunked {
					if !isChunked || resp.ContentLength != -1 {
						t.Errorf("chunked=1: Transfer-Encoding %v, Content-Length %d", resp.TransferEncoding, resp.ContentLength)
					}
				} else if isChunked || resp.ContentLength != int64(size) {
					t.Errorf("fixed: Transfer-Encoding %v, Content-Length %d", resp.TransferEncoding, resp.ContentLength)
				}
			})
		}
	}
	for _, q := range []string{"", "bytes=-1", "bytes=x", fmt.Sprint("bytes=", MaxResourceBytes+1)} {
		resp, _ := n.do(t, "GET", PathResource+"?"+q, "", nil)
		if resp.StatusCode != 400 {
			t.Errorf("%q: status %d, want 400", q, resp.StatusCode)
		}
	}
}

func TestPattern(t *testing.T) {
	t.Parallel()
	whole := make([]byte, 300)
	Pattern(whole, 0)
	part := make([]byte, 100)
	Pattern(part, 150)
	if !bytes.Equal(part, whole[150:250]) {
		t.Fatal("Pattern at an offset differs from the whole")
	}
	if whole[0] != '0' || whole[64] != '0' || whole[10] != 'a' {
		t.Fatalf("pattern starts %q", whole[:70])
	}
}

// unsized hides the length of a reader, so that net/http sends it chunked.
type unsized struct{ r io.Reader }

func (u unsized) Read(p []byte) (int, error) { return u.r.Read(p) }

func TestNodeUpload(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
	}{
		{"empty", 0, false},
		{"small", 100, false},
		{"5 MB", 5 << 20, false},
		{"5 MB chunked", 5 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]byte, tc.size)
			Pattern(data, 3)
			var body io.Reader = bytes.NewReader(data)
			if tc.chunked {
				body = unsized{body}
			}
			resp, got := n.do(t, "POST", PathUpload, "", body)
			sum := sha256.Sum256(data)
			want := fmt.Sprintf("%d %s", tc.size, hex.EncodeToString(sum[:]))
			if resp.StatusCode != 200 || got != want {
				t.Fatalf("upload: %d %q, want %q", resp.StatusCode, got, want)
			}
		})
	}
	resp, _ := n.do(t, "GET", PathUpload, "", nil)
	if resp.StatusCode != 405 {
		t.Errorf("GET upload: %d", resp.StatusCode)
	}
}

func TestNodeEchoHeaders(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	c, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /cobrowse/echo-headers?a=1&b=%20 HTTP/1.1\r\n" +
		"Host: example.test\r\n" +
		"X-Forwarded-For: 192.0.2.1, 127.0.0.1\r\n" +
		"X-Real-IP: 127.0.0.1\r\n" +
		"Cookie: gcbSessionServer=CB_1\r\n" +
		"X-Forwarded-Proto: https\r\n" +
		"Connection: close\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(raw), "\r\n\r\n")
	if !ok {
		t.Fatalf("no head end in %q", raw)
	}
	want := "GET /cobrowse/echo-headers?a=1&b=%20 HTTP/1.1\n" +
		"Host: example.test\n" +
		"X-Forwarded-For: 192.0.2.1, 127.0.0.1\n" +
		"X-Real-Ip: 127.0.0.1\n" +
		"Cookie: gcbSessionServer=CB_1\n" +
		"X-Forwarded-Proto: https\n" +
		"Connection: close\n"
	if !strings.EqualFold(body, want) {
		t.Fatalf("echo-headers:\n%s\nwant (any case):\n%s", body, want)
	}
}

// TestNodeCloseLeavesNothing runs every kind of connection, closes the node
// and checks that no goroutine is left.
func TestNodeCloseLeavesNothing(t *testing.T) {
	defer verifyNoLeaks(t, goleak.IgnoreCurrent())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := NewNode(NodeConfig{Name: "CB_1", PollWait: time.Minute}, zerolog.Nop())
	served := make(chan error, 1)
	go func() { served <- n.Serve(ln) }()
	tn := &testNode{Node: n, addr: ln.Addr().String(), url: "http://" + ln.Addr().String(),
		client: &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}}
	defer tn.client.CloseIdleConnections()

	// An idle keep-alive connection.
	if resp, _ := tn.do(t, "GET", "/", "", nil); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	// A relay pair and an echo WebSocket.
	var wss []*websocket.Conn
	for _, q := range []string{"session=c&role=customer", "session=c&role=agent", "role=echo"} {
		c, _, err := tn.tryDialWS(q, "")
		if err != nil {
			t.Fatal(err)
		}
		wss = append(wss, c)
	}
	// A pending long poll.
	polled := make(chan int, 1)
	go func() {
		resp, err := tn.client.Get(tn.url + PathPoll + "?session=c&role=customer")
		if err != nil {
			polled <- 0
			return
		}
		resp.Body.Close()
		polled <- resp.StatusCode
	}()
	// A stalled upload: the head is sent, the body never comes.
	stalled, err := net.Dial("tcp", tn.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if _, err := io.WriteString(stalled, "POST /cobrowse/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nabc"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return n.Stats().Polls == 1 && n.Stats().WSOpen == 3 })

	start := time.Now()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if st := n.Stats(); st.WSOpen != 0 {
		t.Errorf("WSOpen = %d after Close", st.WSOpen)
	}
	for _, c := range wss {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := c.ReadMessage()
		// A cut connection reads as 1006: no Close frame came.
		var ce *websocket.CloseError
		if err == nil || (errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure) {
			t.Errorf("websocket after Close: %v, want a cut connection", err)
		}
		c.Close()
	}
	select {
	case <-polled:
	case <-time.After(10 * time.Second):
		t.Fatal("long poll still pending after Close")
	}
	if err := n.Serve(ln); err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// verifyNoLeaks fails t if goroutines other than those opts ignore are
// still running 5 s from now. fasthttp's worker cleaner ends at its next
// tick after Serve returns (Server.MaxIdleWorkerDuration, 1 s for a Node).
func verifyNoLeaks(t *testing.T, opts ...goleak.Option) {
	t.Helper()
	// fasthttp's process-wide Date header clock runs for good.
	opts = append(opts, goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
	var err error
	for range 50 {
		if err = goleak.Find(opts...); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Error(err)
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met in 10s")
}

// rawConn is a client connection that writes bytes as given and parses the
// answers with net/http.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

func (c *rawConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func (c *rawConn) answer(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestNodeUploadExpectContinue(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	c := dialRaw(t, n.addr)
	body := strings.Repeat("x", 100_000)
	c.send(t, "POST /cobrowse/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
	if status, _ := c.answer(t); status != 100 {
		t.Fatalf("first answer %d, want 100", status)
	}
	c.send(t, body)
	sum := sha256.Sum256([]byte(body))
	if status, got := c.answer(t); status != 200 || got != "100000 "+hex.EncodeToString(sum[:]) {
		t.Fatalf("final answer %d %q", status, got)
	}
	c.send(t, "GET /cobrowse/resource?bytes=4 HTTP/1.1\r\nHost: x\r\n\r\n")
	if status, got := c.answer(t); status != 200 || got != "0123" {
		t.Fatalf("next request: %d %q", status, got)
	}
}

// TestNodeUnreadBodyKeepsConnection sends bodies the node does not read (a
// 409, a 400) and checks that the next request on the connection is fine.
// (fasthttp drains up to 256 KiB of unread body; beyond, it closes.)
func TestNodeUnreadBodyKeepsConnection(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	c := dialRaw(t, n.addr)
	body := strings.Repeat("y", 100_000)
	c.send(t, "POST /cobrowse/upload HTTP/1.1\r\nHost: x\r\nCookie: gcbSessionServer=CB_2\r\nContent-Length: 100000\r\n\r\n"+body)
	if status, _ := c.answer(t); status != 409 {
		t.Fatalf("foreign upload: %d, want 409", status)
	}
	c.send(t, "POST /cobrowse/resource?bytes=x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	if status, _ := c.answer(t); status != 400 {
		t.Fatalf("bad resource: %d, want 400", status)
	}
	c.send(t, "GET /cobrowse/resource?bytes=3 HTTP/1.1\r\nHost: x\r\n\r\n")
	if status, got := c.answer(t); status != 200 || got != "012" {
		t.Fatalf("next request: %d %q", status, got)
	}
}

func TestNodeBadRequest(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"garbage", "NOT HTTP\r\n\r\n", 400},
		{"head too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, n.addr)
			c.send(t, tc.req)
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get(HeaderNode) != "CB_1" {
				t.Fatalf("status %d X-Node %q, want %d from CB_1", resp.StatusCode, resp.Header.Get(HeaderNode), tc.status)
			}
		})
	}
}
