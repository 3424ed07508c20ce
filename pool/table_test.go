package pool

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// newTestPool builds a pool over the given node URLs with active checks off
// unless cfg says otherwise.
func newTestPool(t *testing.T, cfg Config, urls ...string) *Pool {
	t.Helper()
	for i, u := range urls {
		cfg.Nodes = append(cfg.Nodes, NodeConfig{Name: fmt.Sprintf("CB_Server_%d", i+1), URL: u})
	}
	p, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestLookupForms(t *testing.T) {
	p := newTestPool(t, Config{}, "http://127.0.0.1:1", "http://127.0.0.1:2")
	tb := p.Table()
	cases := map[string]string{
		"CB_Server_1":             "CB_Server_1",
		"CB_Server_2":             "CB_Server_2",
		".CB_Server_2":            "CB_Server_2",
		"abc123.CB_Server_1":      "CB_Server_1",
		"x.y.z.CB_Server_2":       "CB_Server_2",
		"CB_Server_3":             "",
		"CB_Server_1x":            "",
		"xCB_Server_1":            "",
		"":                        "",
		".":                       "",
		"CB_Server_1.":            "",
		"CB_Server_1.CB_Server_3": "",
	}
	for in, want := range cases {
		got := ""
		if n := tb.Lookup([]byte(in)); n != nil {
			got = n.Name
		}
		if got != want {
			t.Errorf("Lookup(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLookupDottedNames(t *testing.T) {
	p, err := New(Config{Nodes: []NodeConfig{
		{Name: "node.1", URL: "http://127.0.0.1:1"},
		{Name: "1", URL: "http://127.0.0.1:2"},
	}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tb := p.Table()
	for in, want := range map[string]string{"node.1": "node.1", "s.node.1": "node.1", "s.1": "1", "1": "1"} {
		if n := tb.Lookup([]byte(in)); n == nil || n.Name != want {
			t.Errorf("Lookup(%q) = %v, want %s", in, n, want)
		}
	}
}

func TestLookupAllocatesNothing(t *testing.T) {
	p := newTestPool(t, Config{}, "http://127.0.0.1:1", "http://127.0.0.1:2")
	tb := p.Table()
	v := []byte("session-abc.CB_Server_2")
	if a := testing.AllocsPerRun(100, func() { tb.Lookup(v) }); a != 0 {
		t.Fatalf("Lookup allocates %.1f times", a)
	}
}

func TestPickSpreadsABurst(t *testing.T) {
	p := newTestPool(t, Config{}, "http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3")
	count := map[string]int{}
	for range 300 {
		n := p.Table().Pick(nil)
		count[n.Name]++
	}
	for name, c := range count {
		if c != 100 {
			t.Errorf("%s got %d of 300 picks, want 100 (ties rotate)", name, c)
		}
	}
}

func TestPickPrefersFewestActive(t *testing.T) {
	p := newTestPool(t, Config{}, "http://127.0.0.1:1", "http://127.0.0.1:2")
	n1 := p.Node("CB_Server_1")
	var leases [5]Lease
	for i := range leases {
		leases[i] = n1.Acquire()
	}
	defer func() {
		for i := range leases {
			leases[i].Release()
		}
	}()
	for range 10 {
		if n := p.Table().Pick(nil); n.Name != "CB_Server_2" {
			t.Fatalf("picked %s with 5 active over an empty node", n.Name)
		}
	}
	if n := p.Table().Pick(p.Node("CB_Server_2")); n != n1 {
		t.Fatalf("Pick(skip) = %v, want the other node", n)
	}
}

func TestValidate(t *testing.T) {
	bad := []Config{
		{},
		{Nodes: []NodeConfig{{Name: "a", URL: "ftp://127.0.0.1:1"}}},
		{Nodes: []NodeConfig{{Name: "a b", URL: "http://127.0.0.1:1"}}},
		{Nodes: []NodeConfig{{Name: "a", URL: "http://127.0.0.1:1/path"}}},
		{Nodes: []NodeConfig{{Name: "a", URL: "http://127.0.0.1:1"}, {Name: "a", URL: "http://127.0.0.1:2"}}},
		{Nodes: []NodeConfig{{Name: "a", URL: "http://127.0.0.1:1"}}, HealthInterval: -1},
	}
	for i, c := range bad {
		c.SetDefaults()
		if err := c.Validate(); err == nil {
			t.Errorf("case %d: Validate accepted %+v", i, c)
		}
	}
}

// healthServer is a node whose health answer the test switches.
func healthServer(t *testing.T) (*httptest.Server, *atomic.Bool) {
	var up atomic.Bool
	up.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cobrowse/health" && up.Load() {
			w.WriteHeader(200)
			return
		}
		w.WriteHeader(503)
	}))
	t.Cleanup(srv.Close)
	return srv, &up
}

func waitState(t *testing.T, n *Node, want State, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if n.State() == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s is %s after %s, want %s", n.Name, n.State(), within, want)
}

func TestHealthFallAndRise(t *testing.T) {
	srv, up := healthServer(t)
	other, _ := healthServer(t)
	p := newTestPool(t, Config{HealthInterval: 20 * time.Millisecond, HealthTimeout: 200 * time.Millisecond}, srv.URL, other.URL)
	n := p.Node("CB_Server_1")
	up.Store(false)
	waitState(t, n, StateDown, 2*time.Second)
	if got := p.Table().Pick(nil); got == n {
		t.Fatal("a down node was picked")
	}
	if n.LastError() == "" {
		t.Fatal("no last error recorded")
	}
	up.Store(true)
	waitState(t, n, StateUp, 2*time.Second)
}

func TestProbeOnce(t *testing.T) {
	srv, up := healthServer(t)
	p := newTestPool(t, Config{}, srv.URL)
	n := p.Node("CB_Server_1")
	if err := n.probeOnce(t.Context()); err != nil {
		t.Fatalf("healthy node: %v", err)
	}
	up.Store(false)
	if err := n.probeOnce(t.Context()); err == nil {
		t.Fatal("503 counted as healthy")
	}
}

func TestRefusedDialFailsNodeAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	srv, _ := healthServer(t)
	p := newTestPool(t, Config{}, "http://"+addr, srv.URL)
	n := p.Node("CB_Server_1")
	if _, err := n.Get(false); err == nil || !IsRefused(err) {
		t.Fatalf("Get on a closed port: %v, want refused", err)
	}
	if n.State() != StateDown {
		t.Fatalf("state %s after a refused connect, want down", n.State())
	}
	for range 10 {
		if p.Table().Pick(nil) == n {
			t.Fatal("failed node still picked")
		}
	}
}

func TestIdleConnsAreReused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	p := newTestPool(t, Config{}, "http://"+ln.Addr().String())
	n := p.Node("CB_Server_1")
	c, err := n.Get(false)
	if err != nil {
		t.Fatal(err)
	}
	server := <-accepted
	c.Put()
	c2, err := n.Get(false)
	if err != nil {
		t.Fatal(err)
	}
	if !c2.Reused || c2 != c {
		t.Fatal("idle connection not reused")
	}
	// A connection the node closed is not handed out again once it has
	// been idle long enough to be checked.
	c2.Put()
	server.Close()
	time.Sleep(probeAfter + 50*time.Millisecond)
	c3, err := n.Get(false)
	if err != nil {
		t.Fatal(err)
	}
	if c3.Reused {
		t.Fatal("a connection closed by the node was reused")
	}
	// fresh always dials, even with an idle connection pooled.
	c3.Put()
	if c4, err := n.Get(true); err != nil || c4.Reused || c4 == c3 {
		t.Fatalf("Get(fresh) reused a pooled connection (%v)", err)
	}
}

func TestDrainKeepsStickyTakesNoNew(t *testing.T) {
	p := newTestPool(t, Config{}, "http://127.0.0.1:1", "http://127.0.0.1:2")
	n := p.Node("CB_Server_1")
	n.Drain()
	tb := p.Table()
	if !tb.Routable(n) {
		t.Fatal("draining node not routable for its sticky sessions")
	}
	for range 10 {
		if tb.Pick(nil) == n {
			t.Fatal("draining node picked for a new session")
		}
	}
	n.Enable()
	seen := false
	for range 10 {
		seen = seen || p.Table().Pick(nil) == n
	}
	if !seen {
		t.Fatal("enabled node never picked")
	}
}

// TestTableRace reads the table from many goroutines while nodes flap.
func TestTableRace(t *testing.T) {
	p := newTestPool(t, Config{}, "http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var picks atomic.Int64
	for range 4 {
		wg.Go(func() {
			v := []byte("s.CB_Server_2")
			for {
				select {
				case <-stop:
					return
				default:
				}
				tb := p.Table()
				if n := tb.Pick(nil); n != nil {
					l := n.Acquire()
					l.Release()
				}
				tb.Lookup(v)
				picks.Add(1)
			}
		})
	}
	// The nodes flap for 300ms at least and until the readers have made
	// picks enough to have met the swaps, on a slow machine too.
	minEnd, maxEnd := time.Now().Add(300*time.Millisecond), time.Now().Add(10*time.Second)
	for i := 0; time.Now().Before(minEnd) || picks.Load() < 1000 && time.Now().Before(maxEnd); i++ {
		n := p.Table().Nodes()[i%3]
		markDown(n)
		markUp(n)
	}
	close(stop)
	wg.Wait()
	if picks.Load() == 0 {
		t.Fatal("no picks made")
	}
}
