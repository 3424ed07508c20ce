package e2e

import (
	"testing"
)

func TestStickyCookieForms(t *testing.T) {
	n1, n2 := startNode(t, "CB_Server_1", 0), startNode(t, "CB_Server_2", 0)
	tt := startTether(t, []*testNode{n1, n2})
	c := dialRaw(t, tt.addr)
	for _, tc := range []struct{ extra, want string }{
		{"Cookie: gcbSessionServer=CB_Server_2\r\n", "CB_Server_2"},
		{"Cookie: gcbSessionServer=CB_Server_1\r\n", "CB_Server_1"},
		{"Cookie: a=1; gcbSessionServer=abc.CB_Server_2; b=2\r\n", "CB_Server_2"},
		{"Cookie: a=1\r\nCookie: gcbSessionServer=.CB_Server_1\r\n", "CB_Server_1"},
	} {
		for range 5 {
			r := c.do(t, get("/cobrowse/x", tc.extra))
			if r.status != 200 || r.get("X-Node") != tc.want {
				t.Fatalf("%q: status %d node %q, want 200 from %s", tc.extra, r.status, r.get("X-Node"), tc.want)
			}
		}
	}
	for range 5 {
		r := c.do(t, get("/cobrowse/x?a=b&co-browse-node-id=CB_Server_2", ""))
		if r.get("X-Node") != "CB_Server_2" {
			t.Fatalf("param: node %q", r.get("X-Node"))
		}
	}
}
