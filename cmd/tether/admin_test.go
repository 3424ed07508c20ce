package main

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestAdminHostsFlag: --admin-hosts takes comma-separated names and may
// repeat; in the file it is a list or one comma-separated string.
func TestAdminHostsFlag(t *testing.T) {
	want := []string{"a.example", "b.example", "c.example"}
	cfg, _, err := parseFlags([]string{"--node", "a=http://127.0.0.1:1", "--admin-hosts", "a.example, b.example", "--admin-hosts", "c.example"}, io.Discard)
	if err != nil || !slices.Equal(cfg.AdminHosts, want) {
		t.Fatalf("flags: %q %v, want %q", cfg.AdminHosts, err, want)
	}
	for _, doc := range []string{"admin-hosts: [a.example, b.example, c.example]\n", "admin-hosts: a.example,b.example,c.example\n"} {
		path := filepath.Join(t.TempDir(), "tether.yaml")
		if err := os.WriteFile(path, []byte("node: [a=http://127.0.0.1:1]\n"+doc), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := parseFlags([]string{"--config", path}, io.Discard)
		if err != nil || !slices.Equal(cfg.AdminHosts, want) {
			t.Errorf("file %q: %q %v, want %q", doc, cfg.AdminHosts, err, want)
		}
	}
}

// TestProxyProtocolFromFlag: --proxy-protocol-from takes comma-separated
// networks (an address alone is its own /32 or /128) and may repeat; in the
// file it is a list or one comma-separated string. Either of
// --proxy-protocol and --proxy-protocol-from without the other is refused.
func TestProxyProtocolFromFlag(t *testing.T) {
	want := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("fd00::/8")}
	cfg, _, err := parseFlags([]string{"--node", "a=http://127.0.0.1:1", "--proxy-protocol", "--proxy-protocol-from", "198.19.2.3/15, 192.0.2.7", "--proxy-protocol-from", "fd00::/8"}, io.Discard)
	if err != nil || !cfg.ProxyProtocol || !slices.Equal(cfg.ProxyProtocolFrom, want) {
		t.Fatalf("flags: %v %v %v, want %v", cfg.ProxyProtocol, cfg.ProxyProtocolFrom, err, want)
	}
	for _, doc := range []string{
		"proxy-protocol: true\nproxy-protocol-from: [198.18.0.0/15, 192.0.2.7, fd00::/8]\n",
		"proxy-protocol: true\nproxy-protocol-from: 198.18.0.0/15,192.0.2.7/32,fd00::/8\n",
	} {
		path := filepath.Join(t.TempDir(), "tether.yaml")
		if err := os.WriteFile(path, []byte("node: [a=http://127.0.0.1:1]\n"+doc), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := parseFlags([]string{"--config", path}, io.Discard)
		if err != nil || !slices.Equal(cfg.ProxyProtocolFrom, want) {
			t.Errorf("file %q: %v %v, want %v", doc, cfg.ProxyProtocolFrom, err, want)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--proxy-protocol"}, "--proxy-protocol needs --proxy-protocol-from"},
		{[]string{"--proxy-protocol-from", "198.18.0.0/15"}, "--proxy-protocol-from is set without --proxy-protocol"},
		{[]string{"--proxy-protocol", "--proxy-protocol-from", "198.18.0.0/33"}, `"198.18.0.0/33" is not a network`},
		{[]string{"--drain-delay", "-1s"}, "--drain-delay -1s: must not be negative"},
	} {
		_, _, err := parseFlags(append([]string{"--node", "a=http://127.0.0.1:1"}, tc.args...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v, want one line with %q", tc.args, err, tc.want)
		}
	}
}
