//go:build !race

package proxy

import "testing"

// TestRouteAllocs: choosing a node by cookie or parameter allocates nothing.
func TestRouteAllocs(t *testing.T) {
	p := testTable(t)
	cfg := Config{}
	cfg.SetDefaults()
	r := newRouter(&cfg)
	var scratch [256]byte
	for _, head := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; gcbSessionServer=s.CB_Server_2\r\n\r\n",
		"GET /x?co-browse-node-id=CB%5FServer%5F1 HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		h := parseTestHead(t, head)
		if a := testing.AllocsPerRun(200, func() { r.route(p.Table(), h, scratch[:]) }); a != 0 {
			t.Errorf("route allocates %.1f times for %q", a, head)
		}
	}
}
