package e2e

import (
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tether-lb/tether/pool/dnstest"
)

// TestNodesFromDNS runs tether with --node-srv only: it starts while the DNS
// server does not answer (503, no node), finds cobrowse-0 once it does,
// sends cookie gcbSessionServer=cobrowse-1 to cobrowse-1 once that appears
// in the SRV records, and when cobrowse-1 leaves them drains it: its
// sticky traffic stays, new sessions go elsewhere, and after
// --drain-timeout its WebSocket clients are told 1001.
func TestNodesFromDNS(t *testing.T) {
	const srv = "_http._tcp.cobrowse.test"
	n0, n1 := startNode(t, "cobrowse-0", 0), startNode(t, "cobrowse-1", 0)
	port := func(n *testNode) uint16 { return netip.MustParseAddrPort(n.addr).Port() }
	hosts := []string{"cobrowse-0.cobrowse.test,127.0.0.1", "cobrowse-1.cobrowse.test,127.0.0.1"}
	srvOf := func(ns ...*testNode) []string {
		var out []string
		for _, n := range ns {
			out = append(out, srv+","+n.name+".cobrowse.test,"+strconv.Itoa(int(port(n))))
		}
		return out
	}
	dns := dnstest.Start(t, dnstest.Records{})
	dns.Stop() // tether starts before the DNS server answers
	tt := startTether(t, nil, "--node-srv", srv, "--dns-server", dns.Addr(), "--dns-timeout", "200ms",
		"--node-dns-interval", "100ms", "--drain-timeout", "1500ms", "--rise", "1")

	if r := dialRaw(t, tt.addr).do(t, get("/cobrowse/x", "")); r.status != 503 {
		t.Fatalf("no node yet: %d, want 503", r.status)
	}
	dns.Set(dnstest.Records{SRV: srvOf(n0), Hosts: hosts})
	answeredBy := func(cookie string) (int, string) {
		r := dialRaw(t, tt.addr).do(t, get("/cobrowse/x", "Cookie: gcbSessionServer="+cookie+"\r\n"))
		return r.status, r.get("X-Node")
	}
	if !waitFor(10*time.Second, func() bool { s, n := answeredBy("cobrowse-0"); return s == 200 && n == "cobrowse-0" }) {
		t.Fatal("cobrowse-0 not found in DNS")
	}
	// cobrowse-1 is not a node yet: its cookie falls back to balancing.
	if _, n := answeredBy("cobrowse-1"); n != "cobrowse-0" {
		t.Fatalf("cookie cobrowse-1 before discovery went to %q", n)
	}

	dns.Set(dnstest.Records{SRV: srvOf(n0, n1), Hosts: hosts})
	if !waitFor(10*time.Second, func() bool { s, n := answeredBy("cobrowse-1"); return s == 200 && n == "cobrowse-1" }) {
		t.Fatal("cookie cobrowse-1 never reached cobrowse-1 after it appeared in DNS")
	}
	sessions := openSessions(t, tt.addr, "cobrowse-1", 2)

	// cobrowse-1 leaves DNS: it drains.
	dns.Set(dnstest.Records{SRV: srvOf(n0), Hosts: hosts})
	removed := time.Now()
	if !waitFor(5*time.Second, func() bool { return strings.Contains(tt.stderr.String(), "node removed: draining") }) {
		t.Fatal("cobrowse-1 not drained after it left DNS")
	}
	if s, n := answeredBy("cobrowse-1"); s != 200 || n != "cobrowse-1" {
		t.Fatalf("sticky request to the draining node: %d from %q", s, n)
	}
	for range 6 {
		if _, n := answeredBy(""); n != "cobrowse-0" {
			t.Fatalf("a new session went to %q while cobrowse-1 drains", n)
		}
	}
	codes, at := awaitClose(t, sessions, 5*time.Second)
	for i, c := range codes {
		if c != 1001 || at[i].Sub(removed) < time.Second {
			t.Fatalf("session %d of the removed node: %d after %v, want 1001 after the drain", i, c, at[i].Sub(removed))
		}
	}
	if !waitFor(5*time.Second, func() bool { _, n := answeredBy("cobrowse-1"); return n == "cobrowse-0" }) {
		t.Fatal("cobrowse-1 still routed after its drain")
	}

	// The lookups are counted.
	resp, err := http.Get("http://" + tt.adminAddr(t) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`tether_dns_lookups_total{result="ok"}`, `tether_dns_lookups_total{result="error"}`} {
		if !strings.Contains(string(body), want) || strings.Contains(string(body), want+" 0\n") {
			t.Errorf("/metrics: no %s above 0", want)
		}
	}
}
