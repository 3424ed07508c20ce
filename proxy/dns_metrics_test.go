package proxy

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestMetricsDNSLookups: /metrics counts the lookups of --node-srv names by
// result; a server that does not answer counts as error, and tether runs
// with no node meanwhile.
func TestMetricsDNSLookups(t *testing.T) {
	// A UDP port nobody reads: each query is refused or times out.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	var cfg Config
	cfg.Pool.NodeSRV = []string{"_http._tcp.cobrowse.test"}
	cfg.Pool.DNSServer = addr
	cfg.Pool.DNSInterval = 20 * time.Millisecond
	cfg.Pool.DNSTimeout = 100 * time.Millisecond
	s, err := New(cfg, zerolog.Nop(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	h := s.AdminHandler()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := map[string]float64{}
		for _, m := range scrape(t, h)["tether_dns_lookups_total"].GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
		if _, ok := got["ok"]; ok && got["error"] >= 1 {
			if _, ok := got["empty"]; !ok {
				t.Fatalf("no empty series: %v", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tether_dns_lookups_total after 5s: %v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	skipped := map[string]bool{}
	for _, m := range scrape(t, h)["tether_dns_skipped_total"].GetMetric() {
		skipped[m.GetLabel()[0].GetValue()] = true
	}
	if !skipped["refused_address"] || !skipped["target_error"] {
		t.Fatalf("tether_dns_skipped_total series: %v, want refused_address and target_error", skipped)
	}
	if n := len(s.Pool().Table().Nodes()); n != 0 {
		t.Fatalf("%d nodes without an answer", n)
	}
}
