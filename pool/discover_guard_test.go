package pool

import (
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// fakeDNS is a DNS server on a free loopback UDP port answering from
// records the test sets: SERVFAIL for the names in fail, NOERROR with the
// records of the name and type asked otherwise (none: an empty answer).
type fakeDNS struct {
	addr string
	mu   sync.Mutex
	rrs  []dns.RR
	fail map[string]bool
}

func startFakeDNS(t *testing.T) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDNS{addr: pc.LocalAddr().String()}
	srv := &dns.Server{PacketConn: pc, Handler: f}
	done := make(chan struct{})
	go func() { defer close(done); srv.ActivateAndServe() }()
	t.Cleanup(func() { srv.Shutdown(); <-done })
	return f
}

// set replaces the records (zone-file lines, TTL 0) and the names that fail.
func (f *fakeDNS) set(t *testing.T, lines []string, fail ...string) {
	t.Helper()
	var rrs []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("record %q: %v", l, err)
		}
		rr.Header().Ttl = 0
		rrs = append(rrs, rr)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rrs, f.fail = rrs, map[string]bool{}
	for _, name := range fail {
		f.fail[dns.Fqdn(name)] = true
	}
}

func (f *fakeDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	if len(r.Question) == 1 {
		q := r.Question[0]
		f.mu.Lock()
		if f.fail[strings.ToLower(q.Name)] {
			m.Rcode = dns.RcodeServerFailure
		}
		for _, rr := range f.rrs {
			if m.Rcode == dns.RcodeSuccess && strings.EqualFold(rr.Header().Name, q.Name) && rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
		f.mu.Unlock()
	}
	w.WriteMsg(m)
}

// newGuardPool builds a pool whose nodes come from f, with active checks
// off: the nodes found are never dialled.
func newGuardPool(t *testing.T, f *fakeDNS, cfg Config, log zerolog.Logger) *Pool {
	t.Helper()
	cfg.DNSServer = f.addr
	cfg.DNSInterval = 20 * time.Millisecond
	cfg.DNSTimeout = 500 * time.Millisecond
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// nodeAddrs lists the pool's nodes as "name=addr", sorted.
func nodeAddrs(p *Pool) []string {
	var out []string
	for _, n := range p.Table().Nodes() {
		out = append(out, n.Name+"="+n.Addr)
	}
	slices.Sort(out)
	return out
}

// syncLog is a log sink safe for the discovery loop and the test at once.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *syncLog) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// TestDiscoverRefusesLocalAddresses: answers that name loopback,
// unspecified, multicast, broadcast or link-local addresses make no node
// (logged once per name, counted), loopback only with DNSAllowLoopback.
func TestDiscoverRefusesLocalAddresses(t *testing.T) {
	f := startFakeDNS(t)
	f.set(t, []string{
		srvName + " SRV 0 0 8080 good.cobrowse.test.",
		srvName + " SRV 0 0 9090 lo.cobrowse.test.",
		srvName + " SRV 0 0 8080 any.cobrowse.test.",
		srvName + " SRV 0 0 8080 mcast.cobrowse.test.",
		srvName + " SRV 0 0 80 meta.cobrowse.test.",
		srvName + " SRV 0 0 8080 bcast.cobrowse.test.",
		"good.cobrowse.test. A 192.0.2.10",
		"lo.cobrowse.test. A 127.0.0.1",
		"any.cobrowse.test. A 0.0.0.0",
		"mcast.cobrowse.test. A 224.0.0.1",
		"meta.cobrowse.test. A 169.254.169.254",
		"bcast.cobrowse.test. A 255.255.255.255",
		"nodes.cobrowse.test. A 192.0.2.11",
		"nodes.cobrowse.test. A 127.0.0.2",
		"nodes.cobrowse.test. AAAA ::1",
		"nodes.cobrowse.test. AAAA ::",
		"nodes.cobrowse.test. AAAA fe80::1",
		"nodes.cobrowse.test. AAAA ff02::1",
		"nodes.cobrowse.test. AAAA ::ffff:127.0.0.1",
	})
	for _, c := range []struct {
		allow bool
		want  []string
	}{
		{false, []string{"192.0.2.11=192.0.2.11:8080", "good=192.0.2.10:8080"}},
		{true, []string{"--1=[::1]:8080", "127.0.0.1=127.0.0.1:8080", "127.0.0.2=127.0.0.2:8080", "192.0.2.11=192.0.2.11:8080", "good=192.0.2.10:8080", "lo=127.0.0.1:9090"}},
	} {
		var logs syncLog
		p := newGuardPool(t, f, Config{NodeSRV: []string{srvName}, NodeDNS: []string{"nodes.cobrowse.test:8080"}, DNSAllowLoopback: c.allow}, zerolog.New(&logs))
		waitFor(t, 5*time.Second, "no node found", func() bool { return len(p.Table().Nodes()) >= 2 })
		start := p.DNSLookups()
		waitFor(t, 5*time.Second, "the names not looked up 3 times more", func() bool { return p.DNSLookups().OK >= start.OK+6 })
		if got := nodeAddrs(p); !slices.Equal(got, c.want) {
			t.Errorf("DNSAllowLoopback %v: nodes %v, want %v", c.allow, got, c.want)
		}
		refused := 11 // per lookup of both names: 5 SRV targets and 6 addresses of nodes.cobrowse.test
		if c.allow {
			refused = 7
		}
		if d := p.DNSLookups(); d.Refused < uint64(refused)*3 {
			t.Errorf("DNSAllowLoopback %v: %d addresses counted refused after 3 lookups or more, want %d each", c.allow, d.Refused, refused)
		}
		if n := logs.count("dns answer names addresses tether does not dial"); n != 2 {
			t.Errorf("DNSAllowLoopback %v: %d warnings of refused addresses over several lookups of 2 names, want 2:\n%s", c.allow, n, logs.b.String())
		}
		p.Close()
	}
}

// TestDiscoverRefusesOwnListeners: a node found at one of tether's own
// listen addresses is refused even with DNSAllowLoopback; a listener on an
// unspecified address covers every loopback address at its port.
func TestDiscoverRefusesOwnListeners(t *testing.T) {
	f := startFakeDNS(t)
	f.set(t, []string{
		srvName + " SRV 0 0 9090 admin.cobrowse.test.",
		srvName + " SRV 0 0 9091 other.cobrowse.test.",
		srvName + " SRV 0 0 8080 listen.cobrowse.test.",
		srvName + " SRV 0 0 8443 tls.cobrowse.test.",
		"admin.cobrowse.test. A 127.0.0.1",
		"other.cobrowse.test. A 127.0.0.1",
		"listen.cobrowse.test. A 127.0.0.9",
		"tls.cobrowse.test. AAAA ::1",
		"nodes.cobrowse.test. A 127.0.0.1",
		"nodes.cobrowse.test. A 127.0.0.2",
	})
	p := newGuardPool(t, f, Config{
		NodeSRV: []string{srvName}, NodeDNS: []string{"nodes.cobrowse.test:9090"}, DNSAllowLoopback: true,
		SelfAddrs: []string{"127.0.0.1:9090", "0.0.0.0:8080", "[::]:8443", "127.0.0.1:0", "bad"},
	}, zerolog.Nop())
	waitFor(t, 5*time.Second, "no node found", func() bool { return len(p.Table().Nodes()) == 2 })
	before := p.DNSLookups()
	waitFor(t, 5*time.Second, "the names not looked up again", func() bool { return p.DNSLookups().OK >= before.OK+2 })
	if got, want := nodeAddrs(p), []string{"127.0.0.2=127.0.0.2:9090", "other=127.0.0.1:9091"}; !slices.Equal(got, want) {
		t.Fatalf("nodes %v, want %v", got, want)
	}
	if p.DNSLookups().Refused == 0 {
		t.Error("refused addresses not counted")
	}
}

// TestDiscoverSkipsFailedTarget: an SRV target whose address lookup fails
// makes no node while the others do; once it had one, it keeps it while
// its lookups fail; when every target's fails the lookup fails and all
// nodes are kept.
func TestDiscoverSkipsFailedTarget(t *testing.T) {
	f := startFakeDNS(t)
	srvs := []string{
		srvName + " SRV 0 0 8080 a.cobrowse.test.",
		srvName + " SRV 0 0 8080 b.cobrowse.test.",
	}
	a, b := "a.cobrowse.test. A 192.0.2.10", "b.cobrowse.test. A 192.0.2.11"
	f.set(t, append(srvs, a), "b.cobrowse.test")
	p := newGuardPool(t, f, Config{NodeSRV: []string{srvName}}, zerolog.Nop())
	waitFor(t, 5*time.Second, "a not found while b's address lookup fails", func() bool { return p.Node("a") != nil })
	waitFor(t, 5*time.Second, "b's failure not counted", func() bool { return p.DNSLookups().TargetErrors > 0 })
	if got := nodeAddrs(p); !slices.Equal(got, []string{"a=192.0.2.10:8080"}) {
		t.Fatalf("nodes %v", got)
	}

	f.set(t, append(srvs, a, b))
	waitFor(t, 5*time.Second, "b not found once it answers", func() bool { return p.Node("b") != nil })
	na, nb := p.Node("a"), p.Node("b")

	f.set(t, append(srvs, a), "b.cobrowse.test") // b fails again: it keeps its node
	before := p.DNSLookups()
	waitFor(t, 5*time.Second, "b's failure not counted", func() bool { return p.DNSLookups().TargetErrors >= before.TargetErrors+3 })
	if p.Node("a") != na || p.Node("b") != nb || nb.Removed() || p.DNSLookups().Error != before.Error {
		t.Fatalf("a target whose address lookup fails lost its node, or the lookup failed: %v", nodeAddrs(p))
	}

	f.set(t, srvs, "a.cobrowse.test", "b.cobrowse.test") // every target fails: the lookup fails
	before = p.DNSLookups()
	waitFor(t, 5*time.Second, "no failed lookup counted", func() bool { return p.DNSLookups().Error >= before.Error+2 })
	if p.Node("a") != na || p.Node("b") != nb || na.Removed() || nb.Removed() {
		t.Fatalf("nodes after every target failed: %v", nodeAddrs(p))
	}
}
