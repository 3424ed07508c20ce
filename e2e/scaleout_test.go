package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// scaleClientIP is the clients' source address in TestScaleOutKillOne:
// HAProxy connects to tether from 127.0.0.1, so the nodes seeing this one
// in X-Forwarded-For shows that the address is the client's, from the
// PROXY protocol header, and not the hop's.
const scaleClientIP = "127.0.0.2"

// scaleDialer dials from scaleClientIP.
var scaleDialer = &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(scaleClientIP)}}

// startHAProxy runs HAProxy in TCP mode on a free loopback port in front
// of tethers, sending them the PROXY protocol v2 header and checking their
// GET /healthz on each admin listener. Its servers are filled in order
// (balance first): each tether but the last takes maxFirst connections,
// the next ones go to the next, so that the test knows where each client
// is.
func startHAProxy(t *testing.T, maxFirst int, tethers ...*tether) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed (CI installs it: .ci/run); the scale-out test needs it as the L4 tier")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var servers strings.Builder
	for i, tt := range tethers {
		_, admin, _ := net.SplitHostPort(tt.adminAddr(t))
		fmt.Fprintf(&servers, "    server tether%d %s check port %s", i+1, tt.addr, admin)
		if i < len(tethers)-1 { // the last one takes the rest
			fmt.Fprintf(&servers, " maxconn %d", maxFirst)
		}
		servers.WriteString("\n")
	}
	cfg := `global
    maxconn 1000
defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 500ms
    retries 2
    option redispatch 1
frontend l4
    bind ` + addr + `
    default_backend tethers
backend tethers
    balance first
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 100ms fall 2 rise 2 send-proxy-v2
` + servers.String()
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-q", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s\n%s", err, out, cfg)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("haproxy output:\n%s", tail(out.String(), 3000))
		}
	})
	if !waitFor(5*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("haproxy did not listen on %s: %s", addr, out.String())
	}
	return addr
}

// clientConns is the sum of tether_client_connections in a tether's
// /metrics.
func clientConns(t *testing.T, tt *tether) int {
	t.Helper()
	_, body := adminDo(t, "GET", "http://"+tt.adminAddr(t)+"/metrics", "", nil)
	n := 0
	for line := range strings.SplitSeq(body, "\n") {
		name, value, ok := strings.Cut(line, " ")
		if ok && (name == "tether_client_connections" || strings.HasPrefix(name, "tether_client_connections{")) {
			v, _ := strconv.ParseFloat(value, 64)
			n += int(v)
		}
	}
	return n
}

// scaleWS is an echo WebSocket of a session sticky to node.
type scaleWS struct {
	ws   *websocket.Conn
	node string
	id   string
}

// dialScaleWS opens an echo WebSocket through addr from scaleClientIP
// with the cookie of node, and checks that node answered the upgrade.
func dialScaleWS(t *testing.T, addr, id, node string) (*websocket.Conn, error) {
	return dialScaleRole(t, addr, id, node, "echo")
}

// dialScaleRole is dialScaleWS for a role of a co-browse session.
func dialScaleRole(t *testing.T, addr, id, node, role string) (*websocket.Conn, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDialContext: scaleDialer.DialContext}
	h := http.Header{"Cookie": {"gcbSessionServer=" + node}}
	ws, resp, err := d.Dial("ws://"+addr+"/cobrowse/ws?role="+role+"&session="+id, h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		return nil, fmt.Errorf("dial %s: %w (status %d)", id, err, status)
	}
	if got := resp.Header.Get("X-Node"); got != node {
		ws.Close()
		return nil, fmt.Errorf("session %s sticky to %s upgraded by %q", id, node, got)
	}
	t.Cleanup(func() { ws.Close() })
	return ws, nil
}

// echo sends msg on s and reads it back.
func (s *scaleWS) echo(msg string) error {
	s.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := s.ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		return fmt.Errorf("session %s: write: %w", s.id, err)
	}
	s.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, got, err := s.ws.ReadMessage()
	switch {
	case err != nil:
		return fmt.Errorf("session %s: read: %w", s.id, err)
	case string(got) != msg:
		return fmt.Errorf("session %s: echo %q, want %q", s.id, got, msg)
	}
	return nil
}

// scaleHTTP is a keep-alive HTTP client carrying the cookie of node.
type scaleHTTP struct {
	c    net.Conn
	br   *bufio.Reader
	node string
}

func dialScaleHTTP(t *testing.T, addr, node string) *scaleHTTP {
	t.Helper()
	c, err := scaleDialer.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &scaleHTTP{c: c, br: bufio.NewReader(c), node: node}
}

// headers GETs /cobrowse/echo-headers on h's connection and returns the
// node's view of the request; a 409 or another node is an error.
func (h *scaleHTTP) headers() (map[string]string, error) {
	h.c.SetDeadline(time.Now().Add(5 * time.Second))
	req := get("/cobrowse/echo-headers", "Cookie: gcbSessionServer="+h.node+"\r\n")
	if _, err := io.WriteString(h.c, req); err != nil {
		return nil, err
	}
	r, err := parseResponse(h.br, false)
	if err != nil {
		return nil, err
	}
	if r.status != 200 || r.get("X-Node") != h.node {
		return nil, fmt.Errorf("answer %d from %q (X-Session-Ended %q), want 200 from %s", r.status, r.get("X-Node"), r.get("X-Session-Ended"), h.node)
	}
	seen := map[string]string{}
	for line := range strings.SplitSeq(string(r.body), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			seen[strings.ToLower(k)] = v
		}
	}
	return seen, nil
}

// checkForwarded checks that the node saw the client's address in
// X-Forwarded-For and X-Real-IP.
func (h *scaleHTTP) checkForwarded(t *testing.T, when string) {
	t.Helper()
	seen, err := h.headers()
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	if seen["x-forwarded-for"] != scaleClientIP || seen["x-real-ip"] != scaleClientIP {
		t.Fatalf("%s: the node saw X-Forwarded-For %q, X-Real-IP %q; want the client's %s (HAProxy connects from 127.0.0.1)",
			when, seen["x-forwarded-for"], seen["x-real-ip"], scaleClientIP)
	}
}

// pollAnswer reads the answer to a long poll sent on h and wants msg.
func (h *scaleHTTP) pollAnswer(msg string) error {
	h.c.SetDeadline(time.Now().Add(10 * time.Second))
	r, err := parseResponse(h.br, false)
	if err != nil {
		return fmt.Errorf("long poll: %w", err)
	}
	if r.status != 200 || string(r.body) != msg || r.get("X-Node") != h.node {
		return fmt.Errorf("long poll: %d %q from %q, want 200 %q from %s", r.status, r.body, r.get("X-Node"), msg, h.node)
	}
	return nil
}

// poll sends a long poll of the agent of session id on h.
func (h *scaleHTTP) poll(id string) error {
	h.c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := io.WriteString(h.c, get("/cobrowse/poll?session="+id+"&role=agent", "Cookie: gcbSessionServer="+h.node+"\r\n"))
	return err
}

// TestScaleOutKillOne: two tethers behind HAProxy in TCP mode (PROXY
// protocol v2, /healthz checks). One gets kill -9: its WebSocket sessions
// and HTTP clients reconnect through HAProxy to the other tether and
// land on their own node (no 409); the other tether's clients go on on
// their connections without an error; the nodes see the client's address
// in X-Forwarded-For throughout. A co-browse pair spans both: the
// customer's WebSocket on the tether killed, the agent's long poll on the
// other; the customer reconnects and the session goes on at its node, the
// agent's poll, never cut, getting the customer's next message.
func TestScaleOutKillOne(t *testing.T) {
	t.Parallel()
	if c, err := scaleDialer.Dial("tcp", "127.0.0.1:1"); err != nil && strings.Contains(err.Error(), "assign requested address") {
		t.Skipf("cannot bind %s: %v", scaleClientIP, err)
	} else if c != nil {
		c.Close()
	}
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	nodes := []*testNode{n1, n2}
	pp := append(healthOff, "--proxy-protocol", "--proxy-protocol-from", "127.0.0.1/32")
	t1, t2 := startTether(t, nodes, pp...), startTether(t, nodes, pp...)
	const perTether = 4 // two WebSockets, an HTTP client and one side of a co-browse pair on each tether
	addr := startHAProxy(t, perTether, t1, t2)
	// HAProxy starts its servers up; wait until both answer through it.
	if !waitFor(5*time.Second, func() bool {
		h := dialScaleHTTP(t, addr, node1)
		_, err := h.headers()
		h.c.Close()
		return err == nil
	}) {
		t.Fatal("no answer through HAProxy")
	}
	if !waitFor(5*time.Second, func() bool { return clientConns(t, t1)+clientConns(t, t2) == 0 }) {
		t.Fatal("the probes' connections stay open")
	}

	// Opened one at a time, each in use before the next: the first three
	// fill tether1, the next three go to tether2.
	type group struct {
		tt   *tether
		ws   []*scaleWS
		http *scaleHTTP
	}
	groups := []*group{{tt: t1}, {tt: t2}}
	const pair = "pair"
	var customer *websocket.Conn // on tether1
	var agent *scaleHTTP         // its long poll on tether2
	for gi, g := range groups {
		for _, node := range []string{node1, node2} {
			s := &scaleWS{node: node, id: fmt.Sprintf("t%d-%s", gi+1, node)}
			var err error
			if s.ws, err = dialScaleWS(t, addr, s.id, node); err != nil {
				t.Fatal(err)
			}
			if err := s.echo("before"); err != nil {
				t.Fatal(err)
			}
			g.ws = append(g.ws, s)
		}
		g.http = dialScaleHTTP(t, addr, []string{node1, node2}[gi])
		g.http.checkForwarded(t, fmt.Sprintf("before the kill, through tether%d", gi+1))
		if gi == 0 {
			var err error
			if customer, err = dialScaleRole(t, addr, pair, node1, "customer"); err != nil {
				t.Fatal(err)
			}
		} else {
			agent = dialScaleHTTP(t, addr, node1)
			if err := agent.poll(pair); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The pair works across the two tethers; the agent polls again.
	customer.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := customer.WriteMessage(websocket.TextMessage, []byte("m1")); err != nil {
		t.Fatal(err)
	}
	if err := agent.pollAnswer("m1"); err != nil {
		t.Fatal(err)
	}
	if err := agent.poll(pair); err != nil {
		t.Fatal(err)
	}
	if c1, c2 := clientConns(t, t1), clientConns(t, t2); c1 != perTether || c2 != perTether {
		t.Fatalf("client connections: tether1 %d, tether2 %d; want %d each", c1, c2, perTether)
	}

	if err := t1.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-t1.exited
	killed := time.Now()

	// tether1's clients: their connections end; they reconnect through
	// HAProxy, which sends them to tether2, and land on their node.
	for _, s := range groups[0].ws {
		s.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := s.ws.ReadMessage(); err == nil {
			t.Fatalf("session %s: a message after its tether died", s.id)
		}
		var err error
		ok := waitFor(5*time.Second, func() bool {
			s.ws, err = dialScaleWS(t, addr, s.id, s.node)
			return err == nil
		})
		if !ok {
			t.Fatalf("session %s did not reconnect through HAProxy within 5s: %v", s.id, err)
		}
		if err := s.echo("after"); err != nil {
			t.Fatal(err)
		}
	}
	old := groups[0].http
	if _, err := old.headers(); err == nil {
		t.Fatal("an answer on a connection of the dead tether")
	}
	var h *scaleHTTP
	if !waitFor(5*time.Second, func() bool {
		h = dialScaleHTTP(t, addr, old.node)
		_, err := h.headers()
		return err == nil
	}) {
		t.Fatal("the HTTP client of the dead tether got no answer through HAProxy within 5s")
	}
	h.checkForwarded(t, "after the kill, reconnected")
	customer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := customer.ReadMessage(); err == nil {
		t.Fatal("the customer got a message after its tether died")
	}
	var err error
	if !waitFor(5*time.Second, func() bool {
		customer, err = dialScaleRole(t, addr, pair, node1, "customer")
		return err == nil
	}) {
		t.Fatalf("the customer did not reconnect through HAProxy within 5s: %v", err)
	}
	customer.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := customer.WriteMessage(websocket.TextMessage, []byte("m2")); err != nil {
		t.Fatal(err)
	}
	if err := agent.pollAnswer("m2"); err != nil {
		t.Fatalf("the agent's long poll on the surviving tether: %v", err)
	}
	t.Logf("tether1's clients back on their nodes %v after the kill", time.Since(killed).Round(time.Millisecond))

	// tether2's clients: the same connections, no error.
	for _, s := range groups[1].ws {
		if err := s.echo("after"); err != nil {
			t.Fatalf("a client of the surviving tether: %v", err)
		}
	}
	groups[1].http.checkForwarded(t, "after the kill, on the surviving tether's connection")
	if c2 := clientConns(t, t2); c2 != perTether+len(groups[0].ws)+2 {
		t.Errorf("tether2 has %d client connections, want its %d and the %d moved", c2, perTether, len(groups[0].ws)+2)
	}
	for _, n := range nodes {
		if st := n.Stats(); st.Sessions409 != 0 {
			t.Errorf("%s answered %d requests 409: a session reached a node that does not own it", n.name, st.Sessions409)
		}
	}
}
