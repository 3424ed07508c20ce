//go:build !race

package route

import (
	"testing"
)

// TestRouteAllocs: choosing a node by cookie or parameter allocates nothing.
func TestRouteAllocs(t *testing.T) {
	p := testTable(t)
	r := New("gcbSessionServer", "co-browse-node-id")
	var scratch [256]byte
	for _, head := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; gcbSessionServer=s.CB_Server_2\r\n\r\n",
		"GET /x?co-browse-node-id=CB%5FServer%5F1 HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		h := parseTestHead(t, head)
		if a := testing.AllocsPerRun(200, func() { r.Route(p.Table(), h, scratch[:]) }); a != 0 {
			t.Errorf("route allocates %.1f times for %q", a, head)
		}
	}
}
