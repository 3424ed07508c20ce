package proxy

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
)

func TestCheckListenAddr(t *testing.T) {
	t.Parallel()
	for addr, ok := range map[string]bool{
		"127.0.0.1:8080": true, ":8080": true, "[::1]:8080": true, "127.0.0.1:0": true,
		"127.0.0.1:": true, "localhost:65535": true, "127.0.0.1:08080": true,
		"127.0.0.1:notaport": false, "127.0.0.1:http": false, "127.0.0.1:65536": false,
		"127.0.0.1:-1": false, "127.0.0.1:+80": false, "8080": false, "::1:8080": false,
	} {
		if err := checkListenAddr(addr); (err == nil) != ok {
			t.Errorf("checkListenAddr(%q) = %v; want ok %v", addr, err, ok)
		}
	}
}

// TestReloadKeepsRestartSettings: a reload whose file changes a setting
// that needs a restart, to a bad value even, keeps the running one and
// applies the rest.
func TestReloadKeepsRestartSettings(t *testing.T) {
	cfg := oneNode("127.0.0.1:1")
	cfg.Listen = "127.0.0.1:0"
	s, err := New(cfg, zerolog.Nop(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	next := oneNode("127.0.0.1:2")
	next.Listen, next.Admin = "127.0.0.1:notaport", "nowhere"
	if err := s.Reload(next); err != nil {
		t.Fatalf("Reload = %v; want the bad restart-only values kept out", err)
	}
	if got := s.cfg(); got.Listen != "127.0.0.1:0" || got.Pool.Nodes[0].URL != "http://127.0.0.1:2" {
		t.Fatalf("after Reload: listen %q, node %q", got.Listen, got.Pool.Nodes[0].URL)
	}
	bad := oneNode("127.0.0.1:99999")
	if err := s.Reload(bad); err == nil {
		t.Fatal("Reload accepted a node URL with port 99999")
	}
}
