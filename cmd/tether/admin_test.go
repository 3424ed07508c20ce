package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
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
