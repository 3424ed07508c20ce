package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// openSessions opens n echo WebSockets sticky to node and proves each is
// spliced with one message.
func openSessions(t *testing.T, addr, node string, n int) []*websocket.Conn {
	t.Helper()
	var out []*websocket.Conn
	for i := range n {
		ws, got := dialWS(t, addr, "role=echo&session=s"+string(rune('a'+i%26)), "gcbSessionServer="+node)
		if got != node {
			t.Fatalf("session went to %s, want %s", got, node)
		}
		if err := ws.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != "ping" {
			t.Fatalf("echo: %q %v", m, err)
		}
		out = append(out, ws)
	}
	return out
}

// awaitClose reads each session until it ends and returns the close codes
// and when each arrived.
func awaitClose(t *testing.T, sessions []*websocket.Conn, within time.Duration) ([]int, []time.Time) {
	t.Helper()
	codes := make([]int, len(sessions))
	at := make([]time.Time, len(sessions))
	var wg sync.WaitGroup
	for i, ws := range sessions {
		wg.Go(func() {
			ws.SetReadDeadline(time.Now().Add(within))
			for {
				_, _, err := ws.ReadMessage()
				if err == nil {
					continue
				}
				at[i] = time.Now()
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					codes[i] = ce.Code
				} else {
					codes[i] = -1
					t.Logf("session %d ended without a Close frame: %v", i, err)
				}
				return
			}
		})
	}
	wg.Wait()
	return codes, at
}

func TestUnhealthyNodeClientsToldRestart(t *testing.T) {
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2})
	sessions := openSessions(t, tt.addr, node1, 20)
	other := openSessions(t, tt.addr, node2, 3)

	off := time.Now()
	n1.SetHealthy(false)
	// fall (2) × interval (100ms ±10%) + timeout (300ms), then one second to
	// tell every client; generous slack for a loaded machine.
	codes, at := awaitClose(t, sessions, 5*time.Second)
	for i, c := range codes {
		if c != 1012 {
			t.Fatalf("session %d closed with %d, want 1012", i, c)
		}
		if d := at[i].Sub(off); d > 2*time.Second {
			t.Fatalf("session %d told after %v", i, d)
		}
	}
	// Sessions on the healthy node are untouched.
	for _, ws := range other {
		if err := ws.WriteMessage(websocket.TextMessage, []byte("still")); err != nil {
			t.Fatal(err)
		}
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != "still" {
			t.Fatalf("healthy node's session broken: %q %v", m, err)
		}
	}
	// Sticky traffic for the down node goes to the other one, which ends
	// the session it does not own.
	c := dialRaw(t, tt.addr)
	r := c.do(t, get("/cobrowse/x", "Cookie: gcbSessionServer="+node1+"\r\n"))
	if r.get("X-Node") != node2 || r.status != 409 || r.get("X-Session-Ended") != "1" {
		t.Fatalf("sticky request for the down node: %d from %s", r.status, r.get("X-Node"))
	}
	tt.waitAccess(t, 1, 3*time.Second, func(m map[string]any) bool {
		return m["why"] == "failover" && m["node"] == node2
	})
	tt.waitAccess(t, 20, 3*time.Second, func(m map[string]any) bool {
		e, _ := m["error"].(string)
		return m["ws"] == true && m["node"] == node1 && strings.Contains(e, "1012")
	})

	// Back after rise (2) × interval.
	n1.SetHealthy(true)
	if !waitFor(3*time.Second, func() bool {
		r := c.do(t, get("/cobrowse/x", "Cookie: gcbSessionServer="+node1+"\r\n"))
		return r.get("X-Node") == node1 && r.status == 200
	}) {
		t.Fatal("node did not come back")
	}
}

func TestKilledNodeClientsToldAtOnce(t *testing.T) {
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2}, healthOff...)
	sessions := openSessions(t, tt.addr, node1, 10)
	killed := time.Now()
	n1.stop()
	codes, at := awaitClose(t, sessions, 5*time.Second)
	for i, c := range codes {
		if c != 1012 {
			t.Fatalf("session %d closed with %d, want 1012", i, c)
		}
		if d := at[i].Sub(killed); d > time.Second {
			t.Fatalf("session %d told %v after the node died", i, d)
		}
	}
}

func TestInFlightRequestsOfDownNodeAnswered502(t *testing.T) {
	n1, n2 := startNode(t, node1, 20*time.Second), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2})
	c := dialRaw(t, tt.addr)
	if _, err := io.WriteString(c, get("/cobrowse/poll?session=lp&role=agent", "Cookie: gcbSessionServer="+node1+"\r\n")); err != nil {
		t.Fatal(err)
	}
	if !waitFor(3*time.Second, func() bool { return n1.Stats().Polls == 1 }) {
		t.Fatal("the poll never reached the node")
	}
	off := time.Now()
	n1.SetHealthy(false)
	r := c.readResponse(t, false)
	if r.status != 502 {
		t.Fatalf("long poll to a node that went down: %d, want 502", r.status)
	}
	if d := time.Since(off); d > 3*time.Second {
		t.Fatalf("answered after %v", d)
	}
}

// adminGet fetches an admin path and decodes JSON into v when v is set.
func adminDo(t *testing.T, method, url string, accept string, v any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s %s: not JSON: %s", method, url, body)
		}
	}
	return resp.StatusCode, string(body)
}

type statusBody struct {
	Nodes []struct {
		Name     string `json:"name"`
		Addr     string `json:"addr"`
		State    string `json:"state"`
		Sessions int64  `json:"ws_sessions"`
		Served   uint64 `json:"served"`
	} `json:"nodes"`
}

func (s statusBody) node(name string) (state string, sessions int64) {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n.State, n.Sessions
		}
	}
	return "", -1
}

func TestAdminDrainStatusHealthz(t *testing.T) {
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2}, healthOff...)
	admin := "http://" + tt.adminAddr(t)

	if code, body := adminDo(t, "GET", admin+"/healthz", "", nil); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	sessions := openSessions(t, tt.addr, node1, 2)
	var st statusBody
	adminDo(t, "GET", admin+"/status", "", &st)
	if state, n := st.node(node1); state != "up" || n != 2 {
		t.Fatalf("/status for %s: %s with %d sessions, want up with 2", node1, state, n)
	}

	if code, _ := adminDo(t, "POST", admin+"/nodes/"+node1+"/drain", "", nil); code != 200 {
		t.Fatalf("drain: %d", code)
	}
	adminDo(t, "GET", admin+"/status", "", &st)
	if state, _ := st.node(node1); state != "draining" {
		t.Fatalf("state after drain: %s", state)
	}
	// New sessions avoid the draining node; its sticky ones stay.
	for range 6 {
		c := dialRaw(t, tt.addr)
		if r := c.do(t, get("/cobrowse/x", "")); r.get("X-Node") != node2 {
			t.Fatalf("new session went to %s while %s drains", r.get("X-Node"), node1)
		}
	}
	c := dialRaw(t, tt.addr)
	if r := c.do(t, get("/cobrowse/x", "Cookie: gcbSessionServer="+node1+"\r\n")); r.get("X-Node") != node1 || r.status != 200 {
		t.Fatalf("sticky request to the draining node: %d from %s", r.status, r.get("X-Node"))
	}
	for _, ws := range sessions {
		if err := ws.WriteMessage(websocket.TextMessage, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ws.ReadMessage(); err != nil {
			t.Fatalf("a draining node's session broke: %v", err)
		}
	}

	if code, _ := adminDo(t, "POST", admin+"/nodes/"+node1+"/enable", "", nil); code != 200 {
		t.Fatalf("enable: %d", code)
	}
	adminDo(t, "GET", admin+"/status", "", &st)
	if state, _ := st.node(node1); state != "up" {
		t.Fatalf("state after enable: %s", state)
	}
	if code, body := adminDo(t, "POST", admin+"/nodes/CB_Server_9/drain", "", nil); code != 404 || !strings.Contains(body, "CB_Server_9") {
		t.Fatalf("unknown node: %d %q", code, body)
	}
	code, page := adminDo(t, "GET", admin+"/status", "text/html", nil)
	if code != 200 || !strings.Contains(page, `id="node-`+node1+`"`) || !strings.Contains(page, `id="node-`+node2+`"`) {
		t.Fatalf("HTML status: %d %q", code, page)
	}
}

// metricValue returns the value of the first /metrics sample whose line
// starts with prefix (name and labels), or -1.
func metricValue(body, prefix string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix+" ") {
			var v float64
			fmt.Sscan(strings.TrimPrefix(line, prefix+" "), &v)
			return v
		}
	}
	return -1
}

func TestMetricsFollowTrafficAndState(t *testing.T) {
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2})
	admin := "http://" + tt.adminAddr(t)
	c := dialRaw(t, tt.addr)
	for range 10 {
		c.do(t, get("/cobrowse/resource?bytes=1000", "Cookie: gcbSessionServer="+node1+"\r\n"))
	}
	sessions := openSessions(t, tt.addr, node2, 3)
	bad := dialRaw(t, tt.addr)
	bad.do(t, "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")

	// An answer is counted once it is written: the last one's count may
	// land just after the client read it.
	var body string
	waitFor(3*time.Second, func() bool {
		_, body = adminDo(t, "GET", admin+"/metrics", "", nil)
		return metricValue(body, `tether_node_requests_total{code="2xx",node="CB_Server_1"}`) >= 10
	})
	for prefix, want := range map[string]float64{
		`tether_node_requests_total{code="2xx",node="CB_Server_1"}`:   10,
		`tether_node_websocket_sessions{node="CB_Server_2"}`:          3,
		`tether_node_state{node="CB_Server_1",state="up"}`:            1,
		`tether_refused_total{reason="400"}`:                          1,
		`tether_pool_misses_total{node="CB_Server_1"}`:                1,
		`tether_pool_hits_total{node="CB_Server_1"}`:                  9,
		`tether_node_response_head_seconds_count{node="CB_Server_1"}`: 10,
	} {
		if got := metricValue(body, prefix); got != want {
			t.Errorf("%s = %v, want %v", prefix, got, want)
		}
	}
	if got := metricValue(body, `tether_node_bytes_total{dir="out",node="CB_Server_1"}`); got < 10000 {
		t.Errorf("bytes out from %s = %v, want at least 10000", node1, got)
	}

	n2.SetHealthy(false)
	awaitClose(t, sessions, 5*time.Second)
	if !waitFor(3*time.Second, func() bool {
		_, body = adminDo(t, "GET", admin+"/metrics", "", nil)
		return metricValue(body, `tether_node_state{node="CB_Server_2",state="down"}`) == 1
	}) {
		t.Fatal("metrics never showed the node down")
	}
	if got := metricValue(body, `tether_node_evictions_total{node="CB_Server_2"}`); got != 3 {
		t.Errorf("evictions = %v, want 3", got)
	}
	// A told client has closeLinger (2s) to hang up; then the session ends.
	if !waitFor(4*time.Second, func() bool {
		_, body = adminDo(t, "GET", admin+"/metrics", "", nil)
		return metricValue(body, `tether_node_websocket_sessions{node="CB_Server_2"}`) == 0
	}) {
		t.Errorf("sessions after eviction never went to 0")
	}
}
