package route

import (
	"bufio"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/wire"
	"github.com/valyala/fasthttp"
)

func testTable(t testing.TB) *pool.Pool {
	p, err := pool.New(pool.Config{Nodes: []pool.NodeConfig{
		{Name: "CB_Server_1", URL: "http://127.0.0.1:1"},
		{Name: "CB_Server_2", URL: "http://127.0.0.1:2"},
	}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func parseTestHead(t testing.TB, raw string) *fasthttp.RequestHeader {
	h := wire.NewRequestHeader()
	if _, err := wire.ReadRequestHead(bufio.NewReader(strings.NewReader(raw)), h, 64<<10, 100); err != nil {
		t.Fatalf("head %q: %v", raw, err)
	}
	return h
}

func TestRoute(t *testing.T) {
	p := testTable(t)
	r := New("gcbSessionServer", "co-browse-node-id")
	var scratch [256]byte
	for _, tc := range []struct {
		head, node string
		why        Reason
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\nCookie: gcbSessionServer=CB_Server_2\r\n\r\n", "CB_Server_2", Cookie},
		{"GET / HTTP/1.1\r\nHost: a\r\nCookie: x=1; gcbSessionServer=s9.CB_Server_1 ; y=2\r\n\r\n", "CB_Server_1", Cookie},
		{"GET / HTTP/1.1\r\nHost: a\r\nCookie: x=1\r\nCookie: gcbSessionServer=\"CB_Server_2\"\r\n\r\n", "CB_Server_2", Cookie},
		{"GET / HTTP/1.1\r\nHost: a\r\nCookie: gcbSessionServer=nope; gcbSessionServer=CB_Server_2\r\n\r\n", "CB_Server_2", Cookie},
		{"GET /x?co-browse-node-id=CB_Server_2 HTTP/1.1\r\nHost: a\r\n\r\n", "CB_Server_2", Param},
		{"GET /x?a=1&co-browse-node-id=CB%5FServer%5F1&b HTTP/1.1\r\nHost: a\r\n\r\n", "CB_Server_1", Param},
		{"GET /x?co-browse-node-id=CB_Server_1 HTTP/1.1\r\nHost: a\r\nCookie: gcbSessionServer=CB_Server_2\r\n\r\n", "CB_Server_2", Cookie},
		{"GET /x?co-browse-node-id=CB_Server_9 HTTP/1.1\r\nHost: a\r\nCookie: gcbSessionServer=CB_Server_7\r\n\r\n", "", Balance},
		{"GET http://127.0.0.9:1/x HTTP/1.1\r\nHost: 127.0.0.9:1\r\n\r\n", "", Balance},
	} {
		h := parseTestHead(t, tc.head)
		n, why := r.Route(p.Table(), h, scratch[:])
		if n == nil {
			t.Fatalf("%q: no node", tc.head)
		}
		if why != tc.why || (tc.node != "" && n.Name != tc.node) {
			t.Errorf("%q: got %s via %s, want %s via %s", tc.head, n.Name, why, tc.node, tc.why)
		}
	}
}

func TestRouteFailsOverFromDownNode(t *testing.T) {
	p := testTable(t)
	p.Node("CB_Server_2").Fail(errTest)
	r := New("gcbSessionServer", "co-browse-node-id")
	var scratch [256]byte
	h := parseTestHead(t, "GET / HTTP/1.1\r\nHost: a\r\nCookie: gcbSessionServer=CB_Server_2\r\n\r\n")
	n, why := r.Route(p.Table(), h, scratch[:])
	if n == nil || n.Name != "CB_Server_1" || why != Failover {
		t.Fatalf("got %v via %s, want CB_Server_1 via failover", n, why)
	}
}

type testError string

func (e testError) Error() string { return string(e) }

const errTest = testError("test failure")

func TestQueryParam(t *testing.T) {
	var scratch [8]byte
	for _, tc := range []struct {
		uri, want string
		ok        bool
	}{
		{"/a?p=v", "v", true},
		{"/a?x=1&p=v&p=w", "v", true},
		{"/a?p=%41b", "Ab", true},
		{"/a?p=%4", "", false},
		{"/a?p=%zz", "", false},
		{"/a?p=123456789", "123456789", true}, // unescaped: no copy, no limit
		{"/a?p=%31234567890", "", false},      // escaped and longer than scratch
		{"/a?pp=v", "", false},
		{"/a#p=v", "", false},
		{"/a?q#p=v", "", false},
		{"/a#f?p=v", "", false},
		{"/a", "", false},
	} {
		v, ok := queryParam([]byte(tc.uri), []byte("p"), scratch[:])
		if ok != tc.ok || string(v) != tc.want {
			t.Errorf("queryParam(%q) = %q, %v; want %q, %v", tc.uri, v, ok, tc.want, tc.ok)
		}
	}
}

// FuzzStickyCookie checks the cookie scanner against net/http's cookie
// parser: whenever net/http parses the header and finds the stickiness
// cookie with a plain value, tether finds the same value first. Values with
// control characters other than HTAB are left out: tether's head check
// refuses such a field before any routing (net/http trims CR and LF as
// spaces).
func FuzzStickyCookie(f *testing.F) {
	for _, s := range []string{
		"gcbSessionServer=CB_Server_1",
		"a=1; gcbSessionServer=x.CB_Server_2; b=2",
		`gcbSessionServer="CB_Server_1"`,
		"gcbSessionServer=; gcbSessionServer=CB_Server_1",
		";;gcbSessionServer =CB_Server_1",
		"gcbSessionServer",
	} {
		f.Add(s)
	}
	name := []byte("gcbSessionServer")
	f.Fuzz(func(t *testing.T, header string) {
		v, rest, ok := nextCookie([]byte(header), name)
		if ok && (len(rest) > len(header) || len(v) > len(header)) {
			t.Fatalf("slices longer than the input")
		}
		if strings.ContainsFunc(header, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
			return
		}
		cookies, err := http.ParseCookie(header)
		if err != nil {
			return
		}
		for _, c := range cookies {
			if c.Name != "gcbSessionServer" {
				continue
			}
			if isPlainValue(c.Value) && (!ok || string(v) != c.Value) {
				t.Fatalf("header %q: tether found %q (%v), net/http %q", header, v, ok, c.Value)
			}
			return
		}
	})
}

func isPlainValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == ';' || c == ',' || c == '\\' {
			return false
		}
	}
	return v != ""
}

// FuzzStickyParam checks the query parameter scanner against net/url: for a
// query without escapes or '+', tether's first value is net/url's. A
// target holding '#' is refused with 400 before any route is chosen
// (checkTarget), so the oracle leaves it out; the scanner must still not
// fail on one.
func FuzzStickyParam(f *testing.F) {
	for _, s := range []string{
		"/x?co-browse-node-id=CB_Server_1",
		"/x?a=b&co-browse-node-id=CB%5FServer%5F2",
		"/x?co-browse-node-id=%zz",
		"/x?co-browse-node-id",
		"/x#co-browse-node-id=a",
		"/?co-browse-node-id=#",
	} {
		f.Add(s)
	}
	name := []byte("co-browse-node-id")
	f.Fuzz(func(t *testing.T, uri string) {
		var scratch [256]byte
		v, ok := queryParam([]byte(uri), name, scratch[:])
		if ok && len(v) > len(uri) {
			t.Fatal("value longer than the input")
		}
		if strings.Contains(uri, "#") {
			return
		}
		u, err := url.ParseRequestURI(uri)
		if err != nil || strings.ContainsAny(u.RawQuery, "%+;") {
			return
		}
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return
		}
		vals, found := q["co-browse-node-id"]
		if found && vals[0] == "" {
			return // no value names no node; tether may skip it
		}
		if found != ok || (ok && string(v) != vals[0]) {
			t.Fatalf("uri %q: tether %q (%v), net/url %q (%v)", uri, v, ok, vals, found)
		}
	})
}
