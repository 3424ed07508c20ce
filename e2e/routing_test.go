package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestStickyValueForms sends every form of stickiness that README.md names
// and checks that each request, several times on one keep-alive connection,
// reaches the named node and is logged with the right "why".
func TestStickyValueForms(t *testing.T) {
	t.Parallel()
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2}, healthOff...)

	cases := []struct {
		name, query, extra, want, why string
	}{
		{"cookie bare", "", "Cookie: gcbSessionServer=CB_Server_2\r\n", node2, "cookie"},
		{"cookie bare other node", "", "Cookie: gcbSessionServer=CB_Server_1\r\n", node1, "cookie"},
		{"cookie anything.NAME", "", "Cookie: gcbSessionServer=5f2c91ab.CB_Server_2\r\n", node2, "cookie"},
		{"cookie .NAME", "", "Cookie: gcbSessionServer=.CB_Server_1\r\n", node1, "cookie"},
		{"cookie among others", "", "Cookie: a=1; JSESSIONID=xyz; gcbSessionServer=CB_Server_2; b=2\r\n", node2, "cookie"},
		{"cookie last without space", "", "Cookie: a=1;gcbSessionServer=CB_Server_2\r\n", node2, "cookie"},
		{"cookie in second Cookie header", "", "Cookie: a=1; b=2\r\nCookie: gcbSessionServer=CB_Server_2\r\n", node2, "cookie"},
		{"cookie quoted", "", "Cookie: gcbSessionServer=\"CB_Server_2\"\r\n", node2, "cookie"},
		{"cookie quoted anything.NAME", "", "Cookie: x=y; gcbSessionServer=\"a.b.CB_Server_1\"\r\n", node1, "cookie"},
		{"param", "?co-browse-node-id=CB_Server_2", "", node2, "param"},
		{"param among others", "?a=b&co-browse-node-id=CB_Server_1&c=d", "", node1, "param"},
		{"param percent-encoded", "?x=1&co-browse-node-id=CB%5FServer%5F2", "", node2, "param"},
		{"param percent-encoded last byte", "?co-browse-node-id=CB_Server_%31", "", node1, "param"},
		{"param with unrelated cookie", "?co-browse-node-id=CB_Server_2", "Cookie: a=1\r\n", node2, "param"},
		{"cookie wins over param", "?co-browse-node-id=CB_Server_2", "Cookie: gcbSessionServer=CB_Server_1\r\n", node1, "cookie"},
		{"unknown cookie, then param", "?co-browse-node-id=CB_Server_2", "Cookie: gcbSessionServer=CB_Server_9\r\n", node2, "param"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, tt.addr)
			path := fmt.Sprintf("/cobrowse/form%d", i)
			status := 200
			if strings.Contains(tc.extra, "CB_Server_9") {
				status = 409 // the node's answer to a cookie naming another node
			}
			for k := range 4 {
				r := c.do(t, get(path+tc.query, tc.extra))
				if r.status != status || r.get("X-Node") != tc.want {
					t.Fatalf("request %d: status %d from %q, want %d from %s", k, r.status, r.get("X-Node"), status, tc.want)
				}
			}
			for _, l := range tt.waitAccess(t, 4, 10*time.Second, pathIs(path+tc.query)) {
				if l["node"] != tc.want || l["why"] != tc.why {
					t.Fatalf("access log: node %v why %v, want %s %s: %v", l["node"], l["why"], tc.want, tc.why, l)
				}
			}
		})
	}
}

// TestStickyUnknownValueBalances checks that values naming no configured
// node are balanced: consecutive requests alternate between the nodes.
func TestStickyUnknownValueBalances(t *testing.T) {
	t.Parallel()
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2}, healthOff...)

	cases := []struct{ name, query, extra string }{
		{"unknown cookie", "", "Cookie: gcbSessionServer=CB_Server_9\r\n"},
		{"name with a suffix", "", "Cookie: gcbSessionServer=CB_Server_1x\r\n"},
		{"name without its dot", "", "Cookie: gcbSessionServer=xCB_Server_1\r\n"},
		{"empty cookie", "", "Cookie: gcbSessionServer=\r\n"},
		{"other cookie name", "", "Cookie: xgcbSessionServer=CB_Server_1; gcbSessionServerx=CB_Server_1\r\n"},
		{"unknown param", "?co-browse-node-id=CB_Server_7", ""},
		{"param with another name", "?co-browse-node-idx=CB_Server_1&xco-browse-node-id=CB_Server_1", ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, tt.addr)
			path := fmt.Sprintf("/cobrowse/unknown%d%s", i, tc.query)
			seen := map[string]int{}
			for range 6 {
				r := c.do(t, get(path, tc.extra))
				seen[r.get("X-Node")]++
			}
			if seen[node1] != 3 || seen[node2] != 3 {
				t.Fatalf("answers by node %v, want 3 from each", seen)
			}
			for _, l := range tt.waitAccess(t, 6, 10*time.Second, pathIs(path)) {
				if l["why"] != "balance" {
					t.Fatalf("access log why %v, want balance: %v", l["why"], l)
				}
			}
		})
	}
}

// TestClientCannotChooseUpstream names an address that is no configured
// node in every place a client can (Host, absolute-form target, cookie,
// parameter) and checks that tether only ever connects to its nodes.
func TestClientCannotChooseUpstream(t *testing.T) {
	t.Parallel()
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2}, healthOff...)
	stray := startStray(t)
	sa := stray.addr()

	cases := []struct {
		name, req string
		want      string // "" means either configured node
	}{
		{"absolute-form target with cookie",
			"GET http://" + sa + "/cobrowse/x HTTP/1.1\r\nHost: " + sa + "\r\nCookie: gcbSessionServer=CB_Server_1\r\n\r\n", node1},
		{"absolute-form target with param",
			"GET http://" + sa + "/cobrowse/x?co-browse-node-id=CB_Server_2 HTTP/1.1\r\nHost: " + sa + "\r\n\r\n", node2},
		{"absolute-form target alone",
			"GET http://" + sa + "/cobrowse/x HTTP/1.1\r\nHost: " + sa + "\r\n\r\n", ""},
		{"Host naming another address",
			"GET /cobrowse/x HTTP/1.1\r\nHost: " + sa + "\r\n\r\n", ""},
		{"Host naming another address with cookie",
			"GET /cobrowse/x HTTP/1.1\r\nHost: " + sa + "\r\nCookie: gcbSessionServer=CB_Server_2\r\n\r\n", node2},
		{"cookie naming an address",
			get("/cobrowse/x", "Cookie: gcbSessionServer="+sa+"\r\n"), ""},
		{"cookie naming a URL",
			get("/cobrowse/x", "Cookie: gcbSessionServer=http://"+sa+"/\r\n"), ""},
		{"param naming an address",
			get("/cobrowse/x?co-browse-node-id="+sa, ""), ""},
		{"param naming a URL",
			get("/cobrowse/x?co-browse-node-id=http%3A%2F%2F"+sa, ""), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, tt.addr).withDeadline(5 * time.Second)
			r := c.do(t, tc.req)
			node := r.get("X-Node")
			switch {
			case tc.want != "" && node != tc.want:
				t.Fatalf("status %d from %q, want an answer from %s", r.status, node, tc.want)
			case tc.want == "" && node != node1 && node != node2:
				t.Fatalf("status %d from %q, want an answer from a configured node", r.status, node)
			}
		})
	}
	select {
	case <-stray.accepted:
		t.Fatalf("tether connected to %s, which is no configured node", sa)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestBalancingNewSessions opens 40 new sessions one after another, each on
// its own connection and without a cookie: with no load, ties rotate, so
// the two nodes get about 20 each (a request may reach tether before the
// one before it has left the in-flight count, and then goes to the other
// node without turning the rotation), and each answer sets the cookie of
// its node.
func TestBalancingNewSessions(t *testing.T) {
	t.Parallel()
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2}, healthOff...)
	seen := map[string]int{}
	for i := range 40 {
		c := dialRaw(t, tt.addr).withDeadline(5 * time.Second)
		r := c.do(t, get("/cobrowse/new", ""))
		c.Close()
		node := r.get("X-Node")
		if r.status != 200 || !strings.HasPrefix(r.get("Set-Cookie"), "gcbSessionServer="+node+";") {
			t.Fatalf("session %d: status %d from %q, Set-Cookie %q", i, r.status, node, r.get("Set-Cookie"))
		}
		seen[node]++
	}
	if seen[node1] < 18 || seen[node2] < 18 {
		t.Fatalf("sessions by node %v, want 20 each, give or take 2", seen)
	}
}
