package pool

import (
	"fmt"
	"net"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/pool/dnstest"
	"github.com/tether-lb/tether/pool/internal/dnsfind"
)

// srvName is the SRV name the discovery tests publish nodes under.
const srvName = "_http._tcp.cobrowse.test"

// srvRecord is a srv-host line for node name on port, and hostRecord its
// address.
func srvRecord(name string, port string) string {
	return srvName + "," + name + ".cobrowse.test," + port
}

func hostRecord(name, ip string) string { return name + ".cobrowse.test," + ip }

// portOf is the port of a test server.
func portOf(srv *httptest.Server) string {
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return port
}

// newDiscoveryPool builds a pool whose nodes come from dns (and cfg).
func newDiscoveryPool(t *testing.T, dns *dnstest.Server, cfg Config) *Pool {
	t.Helper()
	return newDiscoveryPoolLog(t, dns, cfg, zerolog.Nop())
}

// newDiscoveryPoolLog is newDiscoveryPool logging to log.
func newDiscoveryPoolLog(t *testing.T, dns *dnstest.Server, cfg Config, log zerolog.Logger) *Pool {
	t.Helper()
	if cfg.NodeSRV == nil && cfg.NodeDNS == nil {
		cfg.NodeSRV = []string{srvName}
	}
	cfg.DNSServer = dns.Addr()
	cfg.DNSAllowLoopback = true // the test nodes listen on loopback
	if cfg.DNSInterval == 0 {
		cfg.DNSInterval = 50 * time.Millisecond
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 20 * time.Millisecond
	}
	cfg.DNSTimeout = 500 * time.Millisecond
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// waitFor polls cond every 5ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDiscoverSRVNodesJoinAndLeave: a target that appears in the SRV
// records becomes a node that starts down and is routable only after its
// health checks pass; a target that disappears drains, then is gone.
func TestDiscoverSRVNodesJoinAndLeave(t *testing.T) {
	n0, up0 := healthServer(t)
	n1, up1 := healthServer(t)
	up0.Store(false)
	up1.Store(false)
	dns := dnstest.Start(t, dnstest.Records{
		SRV:   []string{srvRecord("cobrowse-0", portOf(n0))},
		Hosts: []string{hostRecord("cobrowse-0", "127.0.0.1"), hostRecord("cobrowse-1", "127.0.0.1")},
	})
	p := newDiscoveryPool(t, dns, Config{DrainTimeout: time.Second})

	waitFor(t, 5*time.Second, "cobrowse-0 not discovered", func() bool { return p.Node("cobrowse-0") != nil })
	c0 := p.Node("cobrowse-0")
	if c0.URL != "http://cobrowse-0.cobrowse.test:"+portOf(n0) || c0.Addr != "127.0.0.1:"+portOf(n0) {
		t.Fatalf("cobrowse-0: URL %s, address %s", c0.URL, c0.Addr)
	}
	// Its health checks fail: it stays down, and nothing is routed to it.
	waitFor(t, 5*time.Second, "no probe of cobrowse-0", func() bool { return c0.LastError() != "" })
	if c0.State() != StateDown || p.Table().Pick(nil) != nil {
		t.Fatalf("a discovered node whose checks fail is %s", c0.State())
	}
	up0.Store(true)
	waitState(t, c0, StateUp, 5*time.Second)
	if p.Table().Pick(nil) != c0 {
		t.Fatal("the discovered node is up but not picked")
	}

	// cobrowse-1 appears: it joins once healthy; cobrowse-0 is untouched.
	dns.Set(dnstest.Records{
		SRV:   []string{srvRecord("cobrowse-0", portOf(n0)), srvRecord("cobrowse-1", portOf(n1))},
		Hosts: []string{hostRecord("cobrowse-0", "127.0.0.1"), hostRecord("cobrowse-1", "127.0.0.1")},
	})
	waitFor(t, 5*time.Second, "cobrowse-1 not discovered", func() bool { return p.Node("cobrowse-1") != nil })
	c1 := p.Node("cobrowse-1")
	if s := c1.State(); s != StateDown {
		t.Fatalf("a new discovered node starts %s, want down until its checks pass", s)
	}
	up1.Store(true)
	waitState(t, c1, StateUp, 5*time.Second)
	if p.Node("cobrowse-0") != c0 || c0.State() != StateUp {
		t.Fatal("a node still in DNS was replaced or disturbed")
	}

	// cobrowse-0 disappears: it drains (sticky traffic only), then is gone.
	dns.Set(dnstest.Records{
		SRV:   []string{srvRecord("cobrowse-1", portOf(n1))},
		Hosts: []string{hostRecord("cobrowse-1", "127.0.0.1")},
	})
	waitFor(t, 5*time.Second, "cobrowse-0 not removed", func() bool { return c0.Removed() })
	if !p.Table().Routable(c0) || c0.State() != StateDraining {
		t.Fatalf("a node gone from DNS must drain, is %s", c0.State())
	}
	for range 20 {
		if p.Table().Pick(nil) == c0 {
			t.Fatal("a draining node was picked for a new session")
		}
	}
	waitFor(t, 5*time.Second, "cobrowse-0 still in the table after its drain", func() bool { return p.Node("cobrowse-0") == nil })
	if p.Node("cobrowse-1") != c1 {
		t.Fatal("cobrowse-1 was replaced")
	}
}

// TestDiscoverKeepsNodesWhenDNSFails: a stopped server (errors) and an
// answer without records (empty) keep the last nodes, and are counted.
func TestDiscoverKeepsNodesWhenDNSFails(t *testing.T) {
	n0, _ := healthServer(t)
	recs := dnstest.Records{
		SRV:   []string{srvRecord("cobrowse-0", portOf(n0))},
		Hosts: []string{hostRecord("cobrowse-0", "127.0.0.1")},
	}
	dns := dnstest.Start(t, recs)
	log := &syncLog{}
	p := newDiscoveryPoolLog(t, dns, Config{}, zerolog.New(log))
	waitFor(t, 5*time.Second, "cobrowse-0 not discovered", func() bool { return p.Node("cobrowse-0") != nil })
	c0 := p.Node("cobrowse-0")
	waitState(t, c0, StateUp, 5*time.Second)

	dns.Stop()
	before := p.DNSLookups()
	waitFor(t, 10*time.Second, "no failed lookup counted", func() bool { return p.DNSLookups().Error >= before.Error+2 })
	if p.Node("cobrowse-0") != c0 || c0.State() != StateUp || c0.Removed() {
		t.Fatal("a DNS server that does not answer changed the nodes")
	}

	dns.Set(dnstest.Records{}) // answers, but no record
	before = p.DNSLookups()
	waitFor(t, 5*time.Second, "no empty lookup counted", func() bool { return p.DNSLookups().Empty >= before.Empty+2 })
	if p.Node("cobrowse-0") != c0 || c0.State() != StateUp || c0.Removed() {
		t.Fatal("an empty answer changed the nodes")
	}

	dns.Set(recs)
	before = p.DNSLookups()
	waitFor(t, 5*time.Second, "no good lookup counted", func() bool { return p.DNSLookups().OK > before.OK })
	if p.Node("cobrowse-0") != c0 {
		t.Fatal("the same answer again replaced the node")
	}
	// Each change of outcome is logged once, saying the nodes were kept.
	for msg, want := range map[string]int{
		`"kept":1,"message":"dns lookup failed: nodes kept"`:        1,
		`"kept":1,"message":"dns lookup found no node: nodes kept"`: 1,
		`"message":"dns lookup answered again"`:                     1,
	} {
		if got := log.count(msg); got != want {
			t.Errorf("%d lines with %s, want %d:\n%s", got, msg, want, log.String())
		}
	}
}

// TestDiscoverRespectsTTL: an answer with a TTL of 60s is not asked again
// within that time though the interval is 50ms, while a name that gets no
// answer is asked again every interval.
func TestDiscoverRespectsTTL(t *testing.T) {
	n0, _ := healthServer(t)
	dns := dnstest.Start(t, dnstest.Records{
		SRV:   []string{srvRecord("cobrowse-0", portOf(n0))},
		Hosts: []string{hostRecord("cobrowse-0", "127.0.0.1")},
		TTL:   60,
	})
	p := newDiscoveryPool(t, dns, Config{NodeSRV: []string{srvName, "_none._tcp.cobrowse.test"}})
	waitFor(t, 5*time.Second, "cobrowse-0 not discovered", func() bool { return p.Node("cobrowse-0") != nil })
	// The empty name is asked every 50ms: ten of its lookups span 500ms,
	// in which the name with a TTL of 60s must not be asked again.
	start := p.DNSLookups()
	waitFor(t, 5*time.Second, "the empty name was not asked again", func() bool { return p.DNSLookups().Empty >= start.Empty+10 })
	if got := p.DNSLookups().OK; got != 1 {
		t.Fatalf("%d good lookups within the TTL, want 1", got)
	}
	if q := dns.Queries(srvName); q != 1 {
		t.Fatalf("dnsmasq saw %d queries for %s within its TTL, want 1", q, srvName)
	}
}

// TestDiscoverReplacesNodeOnNewAddress: a target that resolves to a new
// address (a restarted pod) is replaced, as a reload replaces a node whose
// URL changed: the old copy drains, the new one joins after its checks.
func TestDiscoverReplacesNodeOnNewAddress(t *testing.T) {
	n0, _ := healthServer(t)
	// The same port on 127.0.0.2 is the pod after its restart.
	l2, err := net.Listen("tcp", "127.0.0.2:"+portOf(n0))
	if err != nil {
		t.Skipf("127.0.0.2 not usable: %v", err)
	}
	n2 := httptest.NewUnstartedServer(n0.Config.Handler)
	n2.Listener.Close()
	n2.Listener = l2
	n2.Start()
	t.Cleanup(n2.Close)
	dns := dnstest.Start(t, dnstest.Records{
		SRV:   []string{srvRecord("cobrowse-0", portOf(n0))},
		Hosts: []string{hostRecord("cobrowse-0", "127.0.0.1")},
	})
	p := newDiscoveryPool(t, dns, Config{DrainTimeout: 200 * time.Millisecond})
	waitFor(t, 5*time.Second, "cobrowse-0 not discovered", func() bool { return p.Node("cobrowse-0") != nil })
	old := p.Node("cobrowse-0")
	waitState(t, old, StateUp, 5*time.Second)

	dns.Set(dnstest.Records{
		SRV:   []string{srvRecord("cobrowse-0", portOf(n0))},
		Hosts: []string{hostRecord("cobrowse-0", "127.0.0.2")},
	})
	waitFor(t, 5*time.Second, "cobrowse-0 not replaced", func() bool { return p.Node("cobrowse-0") != old })
	now := p.Node("cobrowse-0")
	if now.Addr != "127.0.0.2:"+portOf(n0) || now.URL != old.URL || !old.Removed() {
		t.Fatalf("replacement: %s at %s, old removed %v", now.URL, now.Addr, old.Removed())
	}
	waitState(t, now, StateUp, 5*time.Second)
	waitFor(t, 5*time.Second, "the old copy still in the table", func() bool { return len(p.Table().Nodes()) == 1 })
}

// TestDiscoverSurvivesReload: a reload that changes the configured nodes
// keeps the discovered ones (the same nodes, not copies), and a configured
// node wins a name DNS gives too.
func TestDiscoverSurvivesReload(t *testing.T) {
	n0, _ := healthServer(t)
	static, _ := healthServer(t)
	dns := dnstest.Start(t, dnstest.Records{
		SRV:   []string{srvRecord("cobrowse-0", portOf(n0)), srvRecord("cobrowse-1", portOf(n0))},
		Hosts: []string{hostRecord("cobrowse-0", "127.0.0.1"), hostRecord("cobrowse-1", "127.0.0.1")},
	})
	cfg := Config{
		Nodes:   []NodeConfig{{Name: "cobrowse-1", URL: static.URL}},
		NodeSRV: []string{srvName}, DNSServer: dns.Addr(), DNSInterval: 50 * time.Millisecond,
		HealthInterval: 20 * time.Millisecond,
	}
	p := newDiscoveryPool(t, dns, cfg)
	waitFor(t, 5*time.Second, "cobrowse-0 not discovered", func() bool { return p.Node("cobrowse-0") != nil })
	c0 := p.Node("cobrowse-0")
	if got := p.Node("cobrowse-1"); got.URL != static.URL {
		t.Fatalf("cobrowse-1 is %s: the configured node must win its name", got.URL)
	}

	cfg.Nodes = append(cfg.Nodes, NodeConfig{Name: "extra", URL: static.URL})
	if err := p.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if p.Node("cobrowse-0") != c0 || c0.Removed() || p.Node("extra") == nil {
		t.Fatal("a reload lost or replaced a discovered node")
	}
	// cobrowse-1 leaves the configuration: DNS's cobrowse-1 takes its place.
	cfg.Nodes = cfg.Nodes[1:]
	if err := p.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if got := p.Node("cobrowse-1"); got == nil || got.Addr != "127.0.0.1:"+portOf(n0) {
		t.Fatalf("cobrowse-1 after its configured node left: %+v", got)
	}
	// Discovery dropped by a reload: its nodes drain.
	cfg.NodeSRV = nil
	if err := p.Update(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "cobrowse-0 kept after its SRV name left the configuration", func() bool { return c0.Removed() })
}

// TestDiscoverStartsWithoutDNS: a pool with only an SRV name starts while
// the server does not answer (no node: 503s), and finds the nodes once it
// does.
func TestDiscoverStartsWithoutDNS(t *testing.T) {
	n0, _ := healthServer(t)
	recs := dnstest.Records{
		SRV:   []string{srvRecord("cobrowse-0", portOf(n0))},
		Hosts: []string{hostRecord("cobrowse-0", "127.0.0.1")},
	}
	dns := dnstest.Start(t, recs)
	dns.Stop()
	p := newDiscoveryPool(t, dns, Config{})
	waitFor(t, 5*time.Second, "no failed lookup counted", func() bool { return p.DNSLookups().Error > 0 })
	if len(p.Table().Nodes()) != 0 || p.Table().Pick(nil) != nil {
		t.Fatal("nodes without an answer")
	}
	dns.Set(recs)
	waitFor(t, 5*time.Second, "cobrowse-0 not discovered", func() bool { return p.Node("cobrowse-0") != nil })
	waitState(t, p.Node("cobrowse-0"), StateUp, 5*time.Second)
}

// TestDiscoverHostAddresses: --node-dns HOST:PORT makes one node per
// address, named by the address.
func TestDiscoverHostAddresses(t *testing.T) {
	n0, _ := healthServer(t)
	dns := dnstest.Start(t, dnstest.Records{
		Hosts: []string{"nodes.cobrowse.test,127.0.0.1", "nodes.cobrowse.test,127.0.0.3", "nodes.cobrowse.test,::1"},
	})
	p := newDiscoveryPool(t, dns, Config{NodeDNS: []string{"nodes.cobrowse.test:" + portOf(n0)}})
	waitFor(t, 5*time.Second, "addresses not discovered", func() bool { return len(p.Table().Nodes()) == 3 })
	for name, addr := range map[string]string{"127.0.0.1": "127.0.0.1:", "127.0.0.3": "127.0.0.3:", "--1": "[::1]:"} {
		n := p.Node(name)
		if n == nil || n.Addr != addr+portOf(n0) || n.URL != "http://nodes.cobrowse.test:"+portOf(n0) {
			t.Errorf("node %s: %+v", name, n)
		}
	}
	waitState(t, p.Node("127.0.0.1"), StateUp, 5*time.Second)
}

// TestDiscoverCapsAndSkips: targets past DNSMaxNodes are ignored, and
// targets whose first label is no valid node name make no node.
func TestDiscoverCapsAndSkips(t *testing.T) {
	n0, _ := healthServer(t)
	recs := dnstest.Records{}
	for _, name := range []string{"a", "b", "c", "d"} {
		recs.SRV = append(recs.SRV, srvRecord(name, portOf(n0)))
		recs.Hosts = append(recs.Hosts, hostRecord(name, "127.0.0.1"))
	}
	recs.SRV = append(recs.SRV, srvName+",x+y.cobrowse.test,"+portOf(n0)) // '+' is no node name character
	recs.Hosts = append(recs.Hosts, "x+y.cobrowse.test,127.0.0.1")
	dns := dnstest.Start(t, recs)
	p := newDiscoveryPool(t, dns, Config{DNSMaxNodes: 3})
	waitFor(t, 5*time.Second, "nodes not discovered", func() bool { return len(p.Table().Nodes()) == 3 })
	var names []string
	for _, n := range p.Table().Nodes() {
		names = append(names, n.Name)
	}
	if got := strings.Join(names, ","); got != "a,b,c" {
		t.Fatalf("nodes %s, want a,b,c (sorted, capped at 3)", got)
	}
}

func TestParseSource(t *testing.T) {
	good := []struct {
		spec         string
		srv          bool
		scheme, name string
	}{
		{"_http._tcp.cobrowse.ns.svc.cluster.local", true, "http", "_http._tcp.cobrowse.ns.svc.cluster.local."},
		{"https+_https._tcp.cobrowse.example.", true, "https", "_https._tcp.cobrowse.example."},
		{"cobrowse.example:8080", false, "http", "cobrowse.example."},
		{"https+cobrowse.example:8443", false, "https", "cobrowse.example."},
	}
	for _, c := range good {
		s, err := parseSource(c.spec, c.srv)
		if err != nil || s.scheme != c.scheme || s.name != c.name {
			t.Errorf("parseSource(%q) = %+v, %v", c.spec, s, err)
		}
	}
	bad := []struct {
		spec string
		srv  bool
	}{
		{"", true}, {"https+", true}, {"a b.example", true}, {"http://x.example", true},
		{"cobrowse.example", false}, {"cobrowse.example:0", false}, {"cobrowse.example:http", false},
		{"127.0.0.1:80", false}, {":80", false},
	}
	for _, c := range bad {
		if _, err := parseSource(c.spec, c.srv); err == nil {
			t.Errorf("parseSource(%q, %v) accepted", c.spec, c.srv)
		}
	}
}

func TestValidateDiscovery(t *testing.T) {
	ok := Config{NodeSRV: []string{srvName}}
	ok.SetDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("SRV names alone: %v", err)
	}
	for _, tc := range []struct {
		flag string
		c    Config
	}{
		{"--node-srv", Config{NodeSRV: []string{"bad name"}}},
		{"--node-srv", Config{NodeSRV: []string{srvName, srvName}}},
		{"--node-dns", Config{NodeDNS: []string{"x.example"}}},
		{"--dns-server", Config{NodeSRV: []string{srvName}, DNSServer: "dns.example:53"}},
		{"--node-dns-interval", Config{NodeSRV: []string{srvName}, DNSInterval: -1}},
		{"--dns-timeout", Config{NodeSRV: []string{srvName}, DNSTimeout: -1}},
		{"--node-dns-max-nodes", Config{NodeSRV: []string{srvName}, DNSMaxNodes: -1}},
	} {
		c := tc.c
		c.SetDefaults()
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.flag+" ") {
			t.Errorf("%s: Validate said %v", tc.flag, err)
		}
	}
}

// TestAddrName: the names dnsfind gives addresses are valid node names.
func TestAddrName(t *testing.T) {
	for in, want := range map[string]string{"192.0.2.5": "192.0.2.5", "fd00::5": "fd00--5", "::1": "--1"} {
		if got := dnsfind.AddrName(netip.MustParseAddr(in)); got != want || validName(got) != nil {
			t.Errorf("AddrName(%s) = %q", in, got)
		}
	}
}

// TestDiscoveredHTTPSNode: a node whose URL keeps a host name and whose
// address was resolved dials the address and verifies the name.
func TestDiscoveredHTTPSNode(t *testing.T) {
	p, err := New(Config{Nodes: []NodeConfig{{Name: "cobrowse-0", URL: "https://cobrowse-0.cobrowse.test:8443", Addr: "127.0.0.1:8443"}}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	n := p.Node("cobrowse-0")
	if n.Addr != "127.0.0.1:8443" || n.tls == nil || n.tls.ServerName != "cobrowse-0.cobrowse.test" {
		t.Fatalf("address %s, TLS server name %v", n.Addr, n.tls)
	}
	bad := Config{Nodes: []NodeConfig{{Name: "a", URL: "http://a.test:80", Addr: "a.test:80"}}}
	bad.SetDefaults()
	if err := bad.Validate(); err == nil {
		t.Fatal("an address that is not IP:PORT was accepted")
	}
}

// TestMergeFoundForgetsDuplicates: the names found twice are remembered
// (to log each once) only while an answer still gives them twice, so
// answers with new duplicate names on every lookup do not grow the set.
func TestMergeFoundForgetsDuplicates(t *testing.T) {
	var logs strings.Builder
	p := &Pool{log: zerolog.New(&logs)}
	node := func(name string) NodeConfig { return NodeConfig{Name: name, URL: "http://" + name + ".test:80"} }
	warned := map[string]bool{}
	for i := range 100 {
		dup := fmt.Sprintf("node-%d", i)
		a := &source{spec: "a", nodes: []NodeConfig{node("kept"), node(dup)}}
		b := &source{spec: "b", nodes: []NodeConfig{node(dup)}}
		for range 3 { // the same answer again: logged once
			found := mergeFound([]*source{a, b}, warned, p)
			if len(found) != 2 || found[1] != a.nodes[1] {
				t.Fatalf("merged %v", found)
			}
		}
		if len(warned) != 1 || !warned[dup] {
			t.Fatalf("after answer %d, names remembered as found twice: %d, want only %s", i, len(warned), dup)
		}
	}
	if n := strings.Count(logs.String(), "found twice"); n != 100 {
		t.Fatalf("%d warnings for 100 names found twice, want 100", n)
	}
	mergeFound([]*source{{spec: "a", nodes: []NodeConfig{node("kept")}}}, warned, p)
	if len(warned) != 0 {
		t.Fatalf("no duplicate in the answer, %d names remembered", len(warned))
	}
}
