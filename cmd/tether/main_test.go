package main

import (
	"flag"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/tether-lb/tether/proxy"
	"go.yaml.in/yaml/v3"
)

// TestExampleConfigCoversEveryFlag keeps deploy/tether.yaml honest: it names
// every flag, its values are the defaults, and it parses.
func TestExampleConfigCoversEveryFlag(t *testing.T) {
	const path = "../../deploy/tether.yaml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	cfgProbe, fileCfg := mustParse(t, nil), mustParse(t, []string{"--config", path})
	names := flagNames(t)
	for _, name := range names {
		if name == "config" {
			continue
		}
		if _, ok := doc[name]; !ok {
			t.Errorf("%s has no key %q", path, name)
		}
	}
	// Apart from the nodes, the file's values are the defaults.
	fileCfg.Pool.Nodes, cfgProbe.Pool.Nodes = nil, nil
	if fileCfg.Listen != cfgProbe.Listen || fileCfg.Pool.HealthInterval != cfgProbe.Pool.HealthInterval ||
		fileCfg.MaxHeaderBytes != cfgProbe.MaxHeaderBytes || fileCfg.UpstreamTimeout != cfgProbe.UpstreamTimeout {
		t.Errorf("the example's values differ from the defaults")
	}
}

func mustParse(t *testing.T, args []string) proxy.Config {
	t.Helper()
	all := append([]string{"--node", "a=http://127.0.0.1:1"}, args...)
	if len(args) > 0 {
		all = args // the file names the nodes
	}
	c, _, err := parseFlags(all, io.Discard)
	if err != nil {
		t.Fatalf("parse %v: %v", all, err)
	}
	return c
}

// flagNames lists the long names of tether's flags, from its help.
func flagNames(t *testing.T) []string {
	var b strings.Builder
	if _, _, err := parseFlags([]string{"--help"}, &b); err != flag.ErrHelp {
		t.Fatalf("--help: %v", err)
	}
	var names []string
	for _, line := range strings.Split(b.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "  --"); ok {
			names = append(names, strings.Fields(rest)[0])
		}
	}
	if len(names) < 20 {
		t.Fatalf("only %d flags found in the help", len(names))
	}
	return names
}

func TestAccessLogOnOff(t *testing.T) {
	for args, want := range map[string]bool{
		"":                   true,
		"--access-log":       true,
		"--access-log=off":   false,
		"--access-log off":   false,
		"--access-log on":    true,
		"--access-log=false": false,
		"-access-log=0":      false,
		"--access-log=on":    true,
	} {
		cfg, _, err := parseWithNode(args)
		if err != nil || cfg.AccessLog != want {
			t.Errorf("%q: access log %v (%v), want %v", args, cfg.AccessLog, err, want)
		}
	}
	if _, _, err := parseFlags([]string{"--node", "a=http://127.0.0.1:1", "--access-log=maybe"}, io.Discard); err == nil {
		t.Error("--access-log=maybe accepted")
	}
}

func TestBadConfigFile(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown.yaml": "listen: 127.0.0.1:1\nbogus: 1\n",
		"badval.yaml":  "node: [a=http://127.0.0.1:1]\nhealth-interval: soon\n",
		"syntax.yaml":  "node: [\n",
	} {
		p := dir + "/" + name
		os.WriteFile(p, []byte(body), 0o644)
		_, _, err := parseFlags([]string{"--config", p}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want one naming the file", name, err)
		}
	}
	// Flags win over the file.
	p := dir + "/ok.yaml"
	os.WriteFile(p, []byte("node: [a=http://127.0.0.1:1]\nheader-timeout: 3s\n"), 0o644)
	cfg, _, err := parseFlags([]string{"--config", p, "--header-timeout", "4s"}, io.Discard)
	if err != nil || cfg.HeaderTimeout.String() != "4s" {
		t.Fatalf("flag over file: %v %v", cfg.HeaderTimeout, err)
	}
}

func TestReleaseMemoryFlag(t *testing.T) {
	for args, want := range map[string]bool{"": true, "--release-memory off": false, "--release-memory=on": true} {
		_, opts, err := parseWithNode(args)
		if err != nil || opts.releaseMemory != want {
			t.Errorf("%q: release %v (%v), want %v", args, opts.releaseMemory, err, want)
		}
	}
}

func TestProcsFlag(t *testing.T) {
	for args, want := range map[string]int{"": 0, "--procs auto": 0, "--procs 1": 1, "--procs=6": 6} {
		_, opts, err := parseWithNode(args)
		if err != nil || opts.procs != want {
			t.Errorf("%q: procs %d (%v), want %d", args, opts.procs, err, want)
		}
	}
	for _, args := range []string{"--procs 0", "--procs -2", "--procs many"} {
		if _, _, err := parseWithNode(args); err == nil || !strings.Contains(err.Error(), "procs") {
			t.Errorf("%q: error %v, want one naming --procs", args, err)
		}
	}
}

// parseWithNode parses args (split on spaces) after one --node.
func parseWithNode(args string) (proxy.Config, options, error) {
	return parseFlags(append([]string{"--node", "a=http://127.0.0.1:1"}, strings.Fields(args)...), io.Discard)
}
