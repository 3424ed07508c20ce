package proxy

import (
	"context"
	"strings"
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

// TestLimitDefaults: zero --max-header-fields and --body-min-rate take
// their defaults; values out of range name their flag.
func TestLimitDefaults(t *testing.T) {
	t.Parallel()
	cfg := oneNode("127.0.0.1:1")
	cfg.SetDefaults()
	if cfg.MaxHeaderFields != 100 || cfg.BodyMinRate != 1024 {
		t.Fatalf("defaults: --max-header-fields %d, --body-min-rate %d; want 100, 1024", cfg.MaxHeaderFields, cfg.BodyMinRate)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for flag, set := range map[string]func(*Config){
		"--max-header-fields": func(c *Config) { c.MaxHeaderFields = -1 },
		"--body-min-rate":     func(c *Config) { c.BodyMinRate = 1 << 31 },
	} {
		c := cfg
		set(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), flag+" ") {
			t.Errorf("Validate = %v; want an error naming %s", err, flag)
		}
	}
	c := cfg
	c.BodyMinRate = -1
	if err := c.Validate(); err != nil {
		t.Errorf("--body-min-rate -1 (none): %v", err)
	}
}
