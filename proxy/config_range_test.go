package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestValidateRanges: a negative count or duration is refused with its flag
// and value named, except -1 where it has a meaning.
func TestValidateRanges(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		set   func(*Config)
		words []string // nil: valid
	}{
		{"max-conns -1 (no limit)", func(c *Config) { c.MaxConns = -1 }, nil},
		{"max-conns -7", func(c *Config) { c.MaxConns = -7 }, []string{"--max-conns", "-7"}},
		{"splice-loops -1 (goroutines)", func(c *Config) { c.SpliceLoops = -1 }, nil},
		{"splice-loops -100", func(c *Config) { c.SpliceLoops = -100 }, []string{"--splice-loops", "-100"}},
		{"http-loops -1 (goroutines)", func(c *Config) { c.HTTPLoops = -1 }, nil},
		{"http-loops -100", func(c *Config) { c.HTTPLoops = -100 }, []string{"--http-loops", "-100"}},
		{"tls-max-handshakes -1 (no cap)", func(c *Config) { c.TLS.MaxHandshakes = -1 }, nil},
		{"tls-max-handshakes -3", func(c *Config) { c.TLS.MaxHandshakes = -3 }, []string{"--tls-max-handshakes", "-3"}},
		{"pool-max-idle -1 (none)", func(c *Config) { c.Pool.MaxIdle = -1 }, nil},
		{"pool-max-idle -5", func(c *Config) { c.Pool.MaxIdle = -5 }, []string{"--pool-max-idle", "-5"}},
		{"drain-timeout -1s", func(c *Config) { c.Pool.DrainTimeout = -time.Second }, []string{"--drain-timeout", "-1s"}},
		{"header-timeout -1s", func(c *Config) { c.HeaderTimeout = -time.Second }, []string{"--header-timeout", "-1s"}},
		{"max-body-bytes -1", func(c *Config) { c.MaxBodyBytes = -1 }, []string{"--max-body-bytes", "-1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := oneNode("127.0.0.1:1")
			tc.set(&c)
			c.SetDefaults()
			err := c.Validate()
			if tc.words == nil {
				if err != nil {
					t.Fatalf("Validate = %v; want valid", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, w := range tc.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q; want it to name %q", err, w)
				}
			}
		})
	}
}

// TestNodeURLCredentials: a node URL with user info is refused, and the
// error names the node but not the password, whether the URL parses or not.
func TestNodeURLCredentials(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"http://user:s3cret@127.0.0.1:8700",
		"https://user:s3cret@node.example:443/",
		"http://user:s3cret/x@127.0.0.1:8700",   // url.Parse would quote it in its error
		"http://user:s3cret@127.0.0.1:notaport", // so would the port check
		"http://s3cret@127.0.0.1:8700",          // a user alone may be a token
		"user:s3cret@127.0.0.1:8700",
	} {
		c := oneNode("127.0.0.1:1")
		c.Pool.Nodes[0].URL = u
		c.SetDefaults()
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: accepted", u)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "s3cret") || !strings.Contains(msg, "CB_Server_1") || !strings.Contains(msg, "credentials") {
			t.Errorf("%s: error %q; want it to name the node and credentials, without the password", u, msg)
		}
	}
}

// TestReloadRefusesCredentials: a reload naming a node URL with a password
// keeps the running configuration, and its error does not print the
// password.
func TestReloadRefusesCredentials(t *testing.T) {
	cfg := oneNode("127.0.0.1:1")
	cfg.Listen = "127.0.0.1:0"
	s, err := New(cfg, zerolog.Nop(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	next := oneNode("127.0.0.1:2")
	next.Pool.Nodes[0].URL = "http://admin:s3cret@127.0.0.1:2"
	err = s.Reload(next)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Reload = %v; want a refusal without the password", err)
	}
	if got := s.cfg().Pool.Nodes[0].URL; got != "http://127.0.0.1:1" {
		t.Fatalf("after a refused reload the node is %q", got)
	}
}
