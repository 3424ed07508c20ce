package e2e

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// dialWS opens a WebSocket through tether and returns it with the node
// that answered the upgrade.
func dialWS(t *testing.T, addr, query, cookie string) (*websocket.Conn, string) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	h := http.Header{}
	if cookie != "" {
		h.Set("Cookie", cookie)
	}
	ws, resp, err := d.Dial("ws://"+addr+"/cobrowse/ws?"+query, h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", query, err, status)
	}
	t.Cleanup(func() { ws.Close() })
	ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	ws.SetWriteDeadline(time.Now().Add(20 * time.Second))
	return ws, resp.Header.Get("X-Node")
}

// closeWS ends a WebSocket with a Close frame and waits for the peer's.
func closeWS(t *testing.T, ws *websocket.Conn) {
	t.Helper()
	if err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(2*time.Second)); err != nil {
		t.Fatalf("write close: %v", err)
	}
	ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	for range 100 {
		if _, _, err := ws.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				t.Fatalf("want the node's Close frame, got %v", err)
			}
			break
		}
	}
	ws.Close()
}

func TestWebSocketEcho(t *testing.T) {
	t.Parallel()
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2}, healthOff...)

	ws, _ := dialWS(t, tt.addr, "session=echo1&role=echo", "")
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	for i, m := range []struct {
		kind int
		data []byte
	}{
		{websocket.TextMessage, []byte("hello through tether")},
		{websocket.BinaryMessage, big},
		{websocket.TextMessage, []byte("")},
		{websocket.TextMessage, []byte("last")},
	} {
		if err := ws.WriteMessage(m.kind, m.data); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		kind, got, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if kind != m.kind || !bytes.Equal(got, m.data) {
			t.Fatalf("echo %d: kind %d, %d bytes; want kind %d, %d bytes", i, kind, len(got), m.kind, len(m.data))
		}
	}
	closeWS(t, ws)
}

// TestWebSocketRelayStickyAndLogged opens the customer and the agent of a
// session with a cookie naming the second node, relays a 3 MB message each
// way, closes both, and checks the access log's session lines.
func TestWebSocketRelayStickyAndLogged(t *testing.T) {
	t.Parallel()
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2}, healthOff...)
	const cookie = "a=1; gcbSessionServer=abc.CB_Server_2"

	cust, cn := dialWS(t, tt.addr, "session=relay1&role=customer", cookie)
	agent, an := dialWS(t, tt.addr, "session=relay1&role=agent", cookie)
	if cn != node2 || an != node2 {
		t.Fatalf("upgrades answered by %q and %q, want %s (the cookie's node)", cn, an, node2)
	}
	// The node counts a WebSocket once its handler runs, just after the
	// 101 went out: wait for both.
	if !waitFor(5*time.Second, func() bool { return n2.Stats().WSOpen == 2 }) || n1.Stats().WSTotal != 0 {
		t.Fatalf("WebSockets open: %s %d, %s %d; want 0 and 2", node1, n1.Stats().WSOpen, node2, n2.Stats().WSOpen)
	}

	msg, _ := randomBody(3<<20, 7)
	for _, dir := range []struct {
		name     string
		from, to *websocket.Conn
	}{{"customer to agent", cust, agent}, {"agent to customer", agent, cust}} {
		if err := dir.from.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatalf("%s: write: %v (node stats %+v)", dir.name, err, n2.Stats())
		}
		kind, got, err := dir.to.ReadMessage()
		if err != nil {
			t.Fatalf("%s: read: %v (node stats %+v)", dir.name, err, n2.Stats())
		}
		if kind != websocket.BinaryMessage || !bytes.Equal(got, msg) {
			t.Fatalf("%s: kind %d, %d bytes, want the 3 MB binary message", dir.name, kind, len(got))
		}
	}
	closeWS(t, cust)
	closeWS(t, agent)

	isSession := func(l map[string]any) bool {
		p, _ := l["path"].(string)
		return l["ws"] == true && strings.HasPrefix(p, "/cobrowse/ws?session=relay1&")
	}
	for _, l := range tt.waitAccess(t, 2, 10*time.Second, isSession) {
		if l["node"] != node2 || l["why"] != "cookie" || num(l, "status") != 101 {
			t.Errorf("session line: node %v why %v status %v, want %s cookie 101", l["node"], l["why"], l["status"], node2)
		}
		if num(l, "bytes_in") < 3<<20 || num(l, "bytes_out") < 3<<20 {
			t.Errorf("session line: bytes_in %d bytes_out %d, want both at least %d", num(l, "bytes_in"), num(l, "bytes_out"), 3<<20)
		}
	}
}

// TestWebSocketParamSticky routes an upgrade by the query parameter.
func TestWebSocketParamSticky(t *testing.T) {
	t.Parallel()
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2}, healthOff...)
	for _, want := range []string{node1, node2, node1, node2} {
		ws, got := dialWS(t, tt.addr, "session=p&role=echo&co-browse-node-id="+want, "")
		if got != want {
			t.Fatalf("upgrade answered by %q, want %s", got, want)
		}
		closeWS(t, ws)
	}
}
