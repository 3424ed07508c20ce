package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNodeDNSFlags: --node-srv and --node-dns repeat (lists in the file),
// stand in for --node, and their settings reach the pool's configuration.
func TestNodeDNSFlags(t *testing.T) {
	cfg, _, err := parseFlags([]string{
		"--node-srv", "_http._tcp.cobrowse.test", "--node-srv", "https+_https._tcp.cobrowse.test",
		"--node-dns", "nodes.cobrowse.test:8080",
		"--node-dns-interval", "3s", "--dns-server", "127.0.0.1:5353", "--dns-timeout", "500ms", "--node-dns-max-nodes", "50",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pool
	if !slices.Equal(p.NodeSRV, []string{"_http._tcp.cobrowse.test", "https+_https._tcp.cobrowse.test"}) ||
		!slices.Equal(p.NodeDNS, []string{"nodes.cobrowse.test:8080"}) ||
		p.DNSInterval != 3*time.Second || p.DNSServer != "127.0.0.1:5353" || p.DNSTimeout != 500*time.Millisecond || p.DNSMaxNodes != 50 {
		t.Fatalf("pool configuration: %+v", p)
	}
	if !p.HasHTTPS() {
		t.Error("a https+ SRV name does not count as https nodes")
	}

	path := filepath.Join(t.TempDir(), "tether.yaml")
	doc := "node-srv: [_http._tcp.a.test, _http._tcp.b.test]\nnode-dns: nodes.cobrowse.test:8080\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _, err = parseFlags([]string{"--config", path}, io.Discard)
	if err != nil || len(cfg.Pool.NodeSRV) != 2 || len(cfg.Pool.NodeDNS) != 1 {
		t.Fatalf("file: %v %+v", err, cfg.Pool)
	}
	def := mustParse(t, nil).Pool
	if def.DNSInterval != 10*time.Second || def.DNSTimeout != 2*time.Second || def.DNSMaxNodes != 1000 || def.DNSServer != "" {
		t.Errorf("defaults: %+v", def)
	}
}

// TestNodeDNSFlagsChecked: a bad value exits with one line naming its flag;
// no --node, --node-srv or --node-dns at all names all three.
func TestNodeDNSFlagsChecked(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "127.0.0.1:0"}, "--node-srv"},
		{[]string{"--node-srv", "bad name"}, "--node-srv"},
		{[]string{"--node-dns", "nodes.test"}, "--node-dns"},
		{[]string{"--node-dns", "192.0.2.1:80"}, "--node-dns"},
		{[]string{"--node-srv", "_x._tcp.test", "--dns-server", "dns.test:53"}, "--dns-server"},
		{[]string{"--node-srv", "_x._tcp.test", "--node-dns-interval", "-1s"}, "--node-dns-interval"},
		{[]string{"--node-srv", "_x._tcp.test", "--dns-timeout", "-1s"}, "--dns-timeout"},
		{[]string{"--node-srv", "_x._tcp.test", "--node-dns-max-nodes", "-5"}, "--node-dns-max-nodes"},
	} {
		_, _, err := parseFlags(c.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error naming %s", c.args, err, c.want)
		}
	}
}
