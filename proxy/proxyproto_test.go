package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/proxy/internal/proxyhdr"
	"github.com/tether-lb/tether/proxy/internal/proxyhdr/proxyhdrtest"
)

// heads records the request heads a node received.
type heads struct {
	mu   sync.Mutex
	seen []http.Header
}

func (h *heads) last() http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.seen) == 0 {
		return nil
	}
	return h.seen[len(h.seen)-1]
}

// startHeadNode runs a node that answers every request 200 "ok" and
// records its head.
func startHeadNode(t *testing.T) (string, *heads) {
	h := &heads{}
	addr := serveConns(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			h.mu.Lock()
			h.seen = append(h.seen, req.Header)
			h.mu.Unlock()
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	return addr, h
}

// ppConfig is a configuration requiring the PROXY protocol from from.
func ppConfig(node string, from ...string) Config {
	cfg := oneNode(node)
	cfg.ProxyProtocol = true
	for _, f := range from {
		cfg.ProxyProtocolFrom = append(cfg.ProxyProtocolFrom, netip.MustParsePrefix(f))
	}
	return cfg
}

// startPPServer runs a Server requiring the PROXY protocol from 127.0.0.1
// in front of a head-recording node, with its logs in buffers.
func startPPServer(t *testing.T, tweak func(*Config)) (s *Server, addr string, node *heads, access, log *logBuffer) {
	t.Helper()
	nodeAddr, node := startHeadNode(t)
	cfg := ppConfig(nodeAddr, "127.0.0.1/32")
	cfg.AccessLog = true
	if tweak != nil {
		tweak(&cfg)
	}
	access, log = &logBuffer{}, &logBuffer{}
	s, addr = serveWith(t, cfg, zerolog.New(log), zerolog.New(access), false)
	return s, addr, node, access, log
}

const ppRequest = "GET /pp HTTP/1.1\r\nHost: a\r\n\r\n"

// readAnswer reads one answer's status line and head from br.
func readAnswer(t *testing.T, c net.Conn, br *bufio.Reader) int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// accessRemote returns the remote of the access-log line for path, waiting
// up to 2s for it.
func accessRemote(t *testing.T, access *logBuffer, path string) string {
	t.Helper()
	var remote string
	ok := waitCond(2*time.Second, func() bool {
		for _, l := range access.lines(t) {
			if l["path"] == path {
				remote, _ = l["remote"].(string)
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no access-log line for %s", path)
	}
	return remote
}

// TestProxyProtocolAddress: the address a PROXY protocol header carries (v1
// and v2, IPv4 and IPv6) is the client's for X-Forwarded-For, X-Real-IP and
// the access log; a v2 LOCAL or v1 UNKNOWN header keeps the socket's. The
// header and the request come in one write: no byte of the request is lost.
func TestProxyProtocolAddress(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		header     func(t *testing.T) []byte
	}{
		{"v1 tcp4", "203.0.113.7", func(*testing.T) []byte { return []byte("PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n") }},
		{"v1 tcp6", "2001:db8::7", func(*testing.T) []byte { return []byte("PROXY TCP6 2001:db8::7 2001:db8::1 56324 443\r\n") }},
		{"v1 unknown", "127.0.0.1", func(*testing.T) []byte { return []byte("PROXY UNKNOWN\r\n") }},
		{"v2 tcp4", "198.51.100.9", func(t *testing.T) []byte { return proxyhdrtest.V2Header(t, "198.51.100.9", nil) }},
		{"v2 tcp6", "2001:db8::9", func(t *testing.T) []byte { return proxyhdrtest.V2Header(t, "2001:db8::9", nil) }},
		{"v2 tcp4 tlvs", "198.51.100.10", func(t *testing.T) []byte {
			return proxyhdrtest.V2Header(t, "198.51.100.10", append(proxyhdrtest.TLV(0xEA, 40), proxyhdrtest.TLV(0x05, 300)...)) // an NLB's VPC endpoint, a unique id
		}},
		{"v2 local", "127.0.0.1", func(t *testing.T) []byte { return proxyhdrtest.V2Header(t, "", nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, addr, node, access, _ := startPPServer(t, nil)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(append(tc.header(t), ppRequest...)); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			if st := readAnswer(t, c, br); st != 200 {
				t.Fatalf("status %d, want 200", st)
			}
			h := node.last()
			if got := h.Get("X-Forwarded-For"); got != tc.want {
				t.Errorf("X-Forwarded-For %q, want %q", got, tc.want)
			}
			if got := h.Get("X-Real-Ip"); got != tc.want {
				t.Errorf("X-Real-IP %q, want %q", got, tc.want)
			}
			if got := accessRemote(t, access, "/pp"); got != tc.want {
				t.Errorf("access log remote %q, want %q", got, tc.want)
			}
			// The connection goes on: a second request carries no header.
			io.WriteString(c, "GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
			if st := readAnswer(t, c, br); st != 200 {
				t.Fatalf("second request: status %d, want 200", st)
			}
			if got := node.last().Get("X-Forwarded-For"); got != tc.want {
				t.Errorf("second request: X-Forwarded-For %q, want %q", got, tc.want)
			}
		})
	}
}

// TestProxyProtocolSplitHeader: a header that arrives in pieces (the
// signature cut, the line cut before its CRLF, the v2 length apart from its
// addresses) is read whole, and the request after it too.
func TestProxyProtocolSplitHeader(t *testing.T) {
	v1 := "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n"
	v2 := string(proxyhdrtest.V2Header(t, "198.51.100.9", proxyhdrtest.TLV(0xEA, 200)))
	for _, tc := range []struct {
		name   string
		pieces []string
		want   string
	}{
		{"v1 signature", []string{"PRO", v1[3:] + ppRequest}, "203.0.113.7"},
		{"v1 before crlf", []string{v1[:20], v1[20 : len(v1)-1], v1[len(v1)-1:], ppRequest}, "203.0.113.7"},
		{"v1 bytewise", strings.Split(v1, ""), "203.0.113.7"},
		{"v2 prefix", []string{v2[:7], v2[7:15], v2[15:30], v2[30:] + ppRequest}, "198.51.100.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, addr, node, _, _ := startPPServer(t, nil)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, p := range tc.pieces {
				if _, err := io.WriteString(c, p); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond) // separate segments, not synchronisation
			}
			if !strings.HasSuffix(tc.pieces[len(tc.pieces)-1], ppRequest) {
				io.WriteString(c, ppRequest)
			}
			if st := readAnswer(t, c, bufio.NewReader(c)); st != 200 {
				t.Fatalf("status %d, want 200", st)
			}
			if got := node.last().Get("X-Forwarded-For"); got != tc.want {
				t.Errorf("X-Forwarded-For %q, want %q", got, tc.want)
			}
		})
	}
}

// expectDropped checks that the server closes c without a byte of answer.
func expectDropped(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	var b [64]byte
	n, err := c.Read(b[:])
	if n > 0 {
		t.Fatalf("want the connection closed, read %q", b[:n])
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", d)
	}
}

// logText returns what l holds.
func logText(l *logBuffer) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestProxyProtocolRefused: a connection from an untrusted source, or with
// a missing, malformed or oversized header, is closed without an answer,
// counted under reason="proxy_protocol" and logged; the node sees nothing.
func TestProxyProtocolRefused(t *testing.T) {
	big := proxyhdrtest.TLV(0xE0, proxyhdr.MaxV2Length) // 3 + 4096 bytes of TLVs: past the bound
	oversized := proxyhdrtest.V2Header(t, "198.51.100.9", nil)
	binary.BigEndian.PutUint16(oversized[14:16], uint16(12+len(big)))
	oversized = append(oversized, big...)
	for _, tc := range []struct {
		name, from string
		send       []byte
	}{
		{"untrusted source", "127.0.0.2/32", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n" + ppRequest)},
		{"missing", "127.0.0.1/32", []byte(ppRequest)},
		{"tls without header", "127.0.0.1/32", []byte{0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0}},
		{"v1 malformed address", "127.0.0.1/32", []byte("PROXY TCP4 203.0.113 192.0.2.1 56324 443\r\n" + ppRequest)},
		{"v1 bad family", "127.0.0.1/32", []byte("PROXY UDP4 203.0.113.7 192.0.2.1 56324 443\r\n" + ppRequest)},
		{"v1 lf alone", "127.0.0.1/32", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\n" + ppRequest)},
		{"v1 too long", "127.0.0.1/32", []byte("PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n")},
		{"v2 oversized", "127.0.0.1/32", oversized},
		{"v2 bad version", "127.0.0.1/32", append(append([]byte{}, proxyhdr.V2Sig...), 0x31, 0x11, 0, 12)},
		{"v2 short address", "127.0.0.1/32", append(append([]byte{}, proxyhdr.V2Sig...), 0x21, 0x11, 0, 4, 1, 2, 3, 4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, addr, node, _, log := startPPServer(t, func(c *Config) {
				c.ProxyProtocolFrom = []netip.Prefix{netip.MustParsePrefix(tc.from)}
			})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(tc.send)
			expectDropped(t, c, 5*time.Second)
			if !waitCond(2*time.Second, func() bool { return s.proxyRefused.Load() == 1 }) {
				t.Fatalf("refused count %d, want 1", s.proxyRefused.Load())
			}
			if h := node.last(); h != nil {
				t.Fatalf("the node got a request: %v", h)
			}
			if !strings.Contains(logText(log), "connection refused: PROXY protocol") {
				t.Fatalf("no log line; log:\n%s", logText(log))
			}
			// The refusal is counted and logged before the connection's
			// accounting ends: wait for it, bounded.
			if !waitCond(2*time.Second, func() bool { return s.Conns() == 0 }) {
				t.Fatalf("%d connections still counted", s.Conns())
			}
		})
	}
}

// TestProxyProtocolTrickle: a header still incomplete at the header timeout
// is closed and counted; a connection closed before its first byte (a TCP
// health check) or silent until the timeout is closed uncounted.
func TestProxyProtocolTrickle(t *testing.T) {
	s, addr, _, _, _ := startPPServer(t, func(c *Config) { c.HeaderTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	done := make(chan struct{})
	go func() { // trickle a byte every 50ms, at most 3s
		defer close(done)
		for _, b := range []byte("PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n") {
			if _, err := c.Write([]byte{b}); err != nil || time.Since(start) > 3*time.Second {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	expectDropped(t, c, 5*time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v, want about the 300ms header timeout", d)
	}
	<-done
	if !waitCond(2*time.Second, func() bool { return s.proxyRefused.Load() == 1 }) {
		t.Fatalf("refused count %d, want 1", s.proxyRefused.Load())
	}

	quiet, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	hangup, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	hangup.Close()
	expectDropped(t, quiet, 5*time.Second)
	if !waitCond(2*time.Second, func() bool { return s.Conns() == 0 }) {
		t.Fatalf("%d connections left", s.Conns())
	}
	if n := s.proxyRefused.Load(); n != 1 {
		t.Fatalf("refused count %d after silent connections, want 1", n)
	}
}

// TestProxyProtocolTLS: on the TLS listener the header comes before the
// ClientHello, and its address is the client's.
func TestProxyProtocolTLS(t *testing.T) {
	nodeAddr, node := startHeadNode(t)
	s, addr := startServer(t, ppConfig(nodeAddr, "127.0.0.1/32"), true)
	for _, tc := range []struct {
		name, want string
		header     []byte
	}{
		{"v1", "203.0.113.7", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n")},
		{"v2", "2001:db8::9", proxyhdrtest.V2Header(t, "2001:db8::9", proxyhdrtest.TLV(0xEA, 40))},
	} {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.Write(tc.header)
		c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, ppRequest); err != nil {
			t.Fatalf("%s: handshake: %v", tc.name, err)
		}
		if st := readAnswer(t, c, bufio.NewReader(c)); st != 200 {
			t.Fatalf("%s: status %d, want 200", tc.name, st)
		}
		if got := node.last().Get("X-Real-Ip"); got != tc.want {
			t.Fatalf("%s: X-Real-IP %q, want %q", tc.name, got, tc.want)
		}
	}
	// Without a header, the ClientHello is refused.
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Fatal("a TLS handshake without the header succeeded")
	}
	if !waitCond(2*time.Second, func() bool { return s.proxyRefused.Load() == 1 }) {
		t.Fatalf("refused count %d, want 1", s.proxyRefused.Load())
	}
}

// TestProxyProtocolMaxConns: --max-conns counts connections before their
// header is read; the one refused past it is counted under max_conns, and
// both reasons reach /metrics.
func TestProxyProtocolMaxConns(t *testing.T) {
	s, addr, _, _, log := startPPServer(t, func(c *Config) { c.MaxConns = 1 })
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	held.Write([]byte("PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n" + ppRequest))
	if st := readAnswer(t, held, bufio.NewReader(held)); st != 200 {
		t.Fatalf("status %d, want 200", st)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("PROXY TCP4 203.0.113.8 192.0.2.1 56324 443\r\n" + ppRequest))
	expectDropped(t, c, 5*time.Second)
	if n := s.maxConnsRefused.Load(); n != 1 {
		t.Fatalf("max_conns refusals %d, want 1", n)
	}
	// The refusal's line names the client the header carries, and the
	// tier it came through.
	if line := log.String(); !strings.Contains(line, `"via":"127.0.0.1","remote":"203.0.113.8","max_conns":1`) {
		t.Fatalf("the refusal's log line does not name the header's client:\n%s", line)
	}
	w := adminDo(s.AdminHandler(), "GET", "/metrics", "", nil)
	for _, want := range []string{`tether_refused_connections_total{reason="max_conns"} 1`, `tether_refused_connections_total{reason="proxy_protocol"} 0`} {
		if !strings.Contains(w.Body.String(), want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
}

// TestProxyProtocolConfig: the protocol needs its trusted sources, and the
// sources the protocol.
func TestProxyProtocolConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		on   bool
		from []netip.Prefix
		want string
	}{
		{"on without from", true, nil, "--proxy-protocol needs --proxy-protocol-from"},
		{"from without on", false, []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}, "--proxy-protocol-from is set without --proxy-protocol"},
		{"invalid", true, []netip.Prefix{{}}, "--proxy-protocol-from invalid Prefix: not a network"},
		{"IPv4-mapped", true, []netip.Prefix{netip.MustParsePrefix("::ffff:198.18.0.0/111")}, "write it as IPv4 (198.18.0.0/15)"},
	} {
		cfg := oneNode("127.0.0.1:1")
		cfg.Listen, cfg.ProxyProtocol, cfg.ProxyProtocolFrom = "127.0.0.1:0", tc.on, tc.from
		cfg.SetDefaults()
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestWithdrawHealthz: from Withdraw on, /healthz answers 503 while
// requests, on new connections too, are still served; /livez answers 200
// throughout, without the admin token; Shutdown keeps both so.
func TestWithdrawHealthz(t *testing.T) {
	node := serveConns(t, answerOK)
	cfg := oneNode(node)
	cfg.AdminTokenFile = writeToken(t, "s3cret-token-value")
	cfg.DrainDelay = 5 * time.Second
	s, addr := startServer(t, cfg, false)
	h := s.AdminHandler()
	for _, p := range []string{"/healthz", "/livez"} {
		if w := adminDo(h, "GET", p, "", nil); w.Code != 200 {
			t.Fatalf("%s before the drain: %d, want 200", p, w.Code)
		}
	}
	if d := s.Withdraw(); d != 5*time.Second {
		t.Fatalf("Withdraw = %v, want the drain delay (5s)", d)
	}
	if w := adminDo(h, "GET", "/healthz", "", nil); w.Code != 503 {
		t.Fatalf("/healthz after Withdraw: %d, want 503 at once", w.Code)
	}
	if w := adminDo(h, "GET", "/livez", "", nil); w.Code != 200 {
		t.Fatalf("/livez after Withdraw: %d, want 200", w.Code)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("a new connection after Withdraw: %v", err)
	}
	defer c.Close()
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Connection") == "close" {
		t.Fatalf("request after Withdraw: %v %v, want 200 kept alive", resp, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s.Shutdown(ctx)
	if w := adminDo(h, "GET", "/healthz", "", nil); w.Code != 503 {
		t.Fatalf("/healthz after Shutdown: %d, want 503", w.Code)
	}
	if w := adminDo(h, "GET", "/livez", "", nil); w.Code != 200 {
		t.Fatalf("/livez after Shutdown: %d, want 200", w.Code)
	}
}

// TestShutdownHealthzAtOnce: /healthz answers 503 from the moment Shutdown
// begins, while a request in flight keeps it draining, and /livez 200.
func TestShutdownHealthzAtOnce(t *testing.T) {
	node, _ := startSilentNode(t)
	cfg := oneNode(node)
	cfg.UpstreamTimeout = 20 * time.Second
	s, addr := startServer(t, cfg, false)
	h := s.AdminHandler()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /cobrowse/poll HTTP/1.1\r\nHost: a\r\n\r\n")
	if !waitCond(2*time.Second, func() bool { return s.pool.Node("CB_Server_1").InFlight() == 1 }) {
		t.Fatal("the request did not reach the node")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { s.Shutdown(ctx); close(done) }()
	if !waitCond(2*time.Second, s.isClosing) {
		t.Fatal("Shutdown did not begin")
	}
	select {
	case <-done:
		t.Fatal("Shutdown ended with a request in flight")
	default:
	}
	if w := adminDo(h, "GET", "/healthz", "", nil); w.Code != 503 {
		t.Fatalf("/healthz during the drain: %d, want 503", w.Code)
	}
	if w := adminDo(h, "GET", "/livez", "", nil); w.Code != 200 {
		t.Fatalf("/livez during the drain: %d, want 200", w.Code)
	}
	<-done
}

// TestProxyProtocolDecidedAtAccept: whether a connection must start with a
// PROXY protocol header is decided once, with the check of its source. A
// reload that turns the protocol on (trusting other networks) between the
// accept and the connection's first read must not make tether believe a
// header from the unchecked source.
func TestProxyProtocolDecidedAtAccept(t *testing.T) {
	s, addr, node, _, _ := startPPServer(t, func(c *Config) { c.ProxyProtocol, c.ProxyProtocolFrom = false, nil })
	on := *s.cfg()
	on.ProxyProtocol, on.ProxyProtocolFrom = true, []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}
	var once sync.Once
	hook := func() {
		once.Do(func() {
			if err := s.Reload(on); err != nil {
				t.Errorf("reload: %v", err)
			}
		})
	}
	testHookAccepted.Store(&hook)
	defer testHookAccepted.Store(nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "PROXY TCP4 6.6.6.6 127.0.0.1 4000 80\r\n"+ppRequest); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, c) // a 400 for the header read as a request line, or a close
	if h := node.last(); h != nil && h.Get("X-Real-Ip") == "6.6.6.6" {
		t.Fatalf("a header from an unchecked source was believed: X-Real-IP %s", h.Get("X-Real-Ip"))
	}
	if !s.cfg().ProxyProtocol {
		t.Fatal("the reload did not run")
	}
}
