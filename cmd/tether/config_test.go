package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tether-lb/tether/proxy"
)

// parseFile parses --config with a file holding body (a node is added
// unless body names one).
func parseFile(t *testing.T, body string) (string, error) {
	t.Helper()
	if !strings.Contains(body, "node:") {
		body = "node: [a=http://127.0.0.1:1]\n" + body
	}
	p := filepath.Join(t.TempDir(), "tether.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := parseFlags([]string{"--config", p}, io.Discard)
	return p, err
}

// configCase is one bad setting given as flags and as the same key in a
// file: both must fail with an error holding every word of want (the file's
// path too, for the file) and none of never.
type configCase struct {
	name  string
	args  []string // flags; a node is added
	yaml  string   // the same as a file ("" to skip)
	want  []string
	never []string
}

func (tc configCase) check(t *testing.T) {
	t.Helper()
	if tc.args != nil {
		args := tc.args
		if args[0] != "--node" {
			args = append([]string{"--node", "a=http://127.0.0.1:1"}, args...)
		}
		_, _, err := parseFlags(args, io.Discard)
		checkErr(t, "flags", err, tc.want, tc.never)
	}
	if tc.yaml != "" {
		p, err := parseFile(t, tc.yaml)
		checkErr(t, "file", err, tc.want, tc.never)
		if err != nil && !strings.Contains(err.Error(), p) && !strings.Contains(err.Error(), "--") {
			t.Errorf("file: error %q names neither the file nor the flag", err)
		}
	}
}

func checkErr(t *testing.T, how string, err error, want, never []string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: accepted", how)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not name %q", how, err, w)
		}
	}
	for _, w := range never {
		if strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q shows %q", how, err, w)
		}
	}
}

// TestConfigNegativeRefused: negative counts and durations are refused from
// flags and files, naming the key and value; -1 is accepted where it has a
// meaning.
func TestConfigNegativeRefused(t *testing.T) {
	for _, tc := range []configCase{
		{name: "drain-timeout", args: []string{"--drain-timeout", "-1s"}, yaml: "drain-timeout: -1s\n", want: []string{"drain-timeout", "-1s"}},
		{name: "max-conns", args: []string{"--max-conns", "-7"}, yaml: "max-conns: -7\n", want: []string{"max-conns", "-7"}},
		{name: "tls-max-handshakes", args: []string{"--tls-max-handshakes", "-3"}, yaml: "tls-max-handshakes: -3\n", want: []string{"tls-max-handshakes", "-3"}},
		{name: "splice-loops", args: []string{"--splice-loops", "-100"}, yaml: "splice-loops: -100\n", want: []string{"splice-loops", "-100"}},
		{name: "http-loops", args: []string{"--http-loops", "-100"}, yaml: "http-loops: -100\n", want: []string{"http-loops", "-100"}},
		{name: "pool-max-idle", args: []string{"--pool-max-idle", "-5"}, yaml: "pool-max-idle: -5\n", want: []string{"pool-max-idle", "-5"}},
		{name: "header-timeout", args: []string{"--header-timeout", "-2s"}, yaml: "header-timeout: -2s\n", want: []string{"header-timeout", "-2s"}},
		{name: "health-interval", args: []string{"--health-interval", "-1s"}, yaml: "health-interval: -1s\n", want: []string{"health-interval", "-1s"}},
		{name: "max-body-bytes", args: []string{"--max-body-bytes", "-1"}, yaml: "max-body-bytes: -1\n", want: []string{"max-body-bytes", "-1"}},
		{name: "rise", args: []string{"--rise", "-1"}, yaml: "rise: -1\n", want: []string{"rise", "-1"}},
		{name: "linger-timeout", args: []string{"--linger-timeout", "-1s"}, yaml: "linger-timeout: -1s\n", want: []string{"linger-timeout", "-1s"}},
		{name: "handover-hard-stop", args: []string{"--handover-hard-stop", "0s"}, yaml: "handover-hard-stop: -1m\n", want: []string{"handover-hard-stop", "must be positive"}},
	} {
		t.Run(tc.name, tc.check)
	}
	for _, f := range []string{"max-conns", "tls-max-handshakes", "splice-loops", "http-loops", "pool-max-idle"} {
		if _, _, err := parseWithNode("--" + f + " -1"); err != nil {
			t.Errorf("--%s -1: %v; want it accepted", f, err)
		}
		if _, err := parseFile(t, f+": -1\n"); err != nil {
			t.Errorf("%s: -1 in a file: %v; want it accepted", f, err)
		}
	}
}

// TestConfigBadValueNamed: a value that does not parse is named, with what
// was expected, not just "parse error".
func TestConfigBadValueNamed(t *testing.T) {
	for _, tc := range []configCase{
		{name: "count", args: []string{"--max-conns", "lots"}, yaml: "max-conns: lots\n", want: []string{"max-conns", `"lots" is not a whole number`}, never: []string{"parse error"}},
		{name: "count 1.5", args: []string{"--rise", "1.5"}, yaml: "rise: 1.5\n", want: []string{"rise", `"1.5" is not a whole number`}},
		{name: "duration", args: []string{"--header-timeout", "soon"}, yaml: "header-timeout: soon\n", want: []string{"header-timeout", `"soon" is not a duration`}},
		{name: "duration without unit", yaml: "header-timeout: 10\n", want: []string{"header-timeout", `"10" is not a duration`}},
		{name: "bool", args: []string{"--reuseport=maybe"}, yaml: "reuseport: maybe\n", want: []string{"reuseport", `"maybe" is not true or false`}},
		{name: "on/off", args: []string{"--access-log=maybe"}, yaml: "access-log: maybe\n", want: []string{"access-log", `"maybe"`, "on or off"}},
	} {
		t.Run(tc.name, tc.check)
	}
	p, err := parseFile(t, "max-conns: lots\n")
	if want := "--config " + p + `: max-conns: "lots" is not a whole number`; err == nil || err.Error() != want {
		t.Errorf("error %v; want %q", err, want)
	}
}

// TestConfigScalarKeyList: a list (or a map) for a key that takes one value
// is refused, not read as its last item. Only the flags that repeat take a
// list (a new one goes in repeated).
func TestConfigScalarKeyList(t *testing.T) {
	repeated := map[string]bool{"config": true, "node": true, "cert": true, "key": true, "admin-hosts": true, "proxy-protocol-from": true, "node-srv": true, "node-dns": true}
	for _, name := range flagNames(t) {
		if repeated[name] {
			continue
		}
		_, err := parseFile(t, name+": [127.0.0.1:1, 127.0.0.1:2]\n")
		if err == nil || !strings.Contains(err.Error(), name+": expected one ") || !strings.Contains(err.Error(), "got a list") {
			t.Errorf("%s given a list: %v; want it refused", name, err)
		}
		if _, err := parseFile(t, name+": {a: b}\n"); err == nil || !strings.Contains(err.Error(), "got a map") {
			t.Errorf("%s given a map: %v; want it refused", name, err)
		}
	}
	_, err := parseFile(t, "listen: [127.0.0.1:1, 127.0.0.1:2]\n")
	if err == nil || !strings.HasSuffix(err.Error(), "listen: expected one address, got a list") {
		t.Errorf("listen given a list: %v", err)
	}
	// The repeated keys still take lists.
	cfg, _, err := parseFlags([]string{"--config", mustFile(t, "node: [a=http://127.0.0.1:1, b=http://127.0.0.1:2]\nlisten: 127.0.0.1:0\n")}, io.Discard)
	if err != nil || len(cfg.Pool.Nodes) != 2 {
		t.Errorf("node list: %d nodes, %v", len(cfg.Pool.Nodes), err)
	}
}

func mustFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tether.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigNodeCredentials: a node URL with user info is refused from
// flags and files, without printing the password.
func TestConfigNodeCredentials(t *testing.T) {
	for _, tc := range []configCase{
		{name: "flag", args: []string{"--node", "A=http://admin:s3cret@127.0.0.1:8700"}, want: []string{"--node", "A=", "credentials", "admin:xxxxx@"}, never: []string{"s3cret"}},
		{name: "flag without name", args: []string{"--node", "http://admin:s3cret@127.0.0.1:8700"}, want: []string{"--node", "NAME=URL"}, never: []string{"s3cret"}},
		{name: "flag, bad port", args: []string{"--node", "A=http://admin:s3cret@127.0.0.1:x"}, want: []string{"--node", "credentials"}, never: []string{"s3cret"}},
		{name: "file list", yaml: "node: [A=http://admin:s3cret@127.0.0.1:8700]\n", want: []string{"--node", "credentials"}, never: []string{"s3cret"}},
		{name: "file map", yaml: "node: {A: 'http://admin:s3cret@127.0.0.1:8700'}\n", want: []string{"--node", "credentials"}, never: []string{"s3cret"}},
		{name: "file nested list", yaml: "node: [[A=http://admin:s3cret@127.0.0.1:8700]]\n", want: []string{"node"}, never: []string{"s3cret"}},
	} {
		t.Run(tc.name, tc.check)
	}
}

// TestFlagDefaultsAreSetDefaults: each flag starts at its Config field's
// default from SetDefaults (their one source), but for what only the
// command line sets (listeners, nodes, --health-interval, --reuseport,
// --access-log).
func TestFlagDefaultsAreSetDefaults(t *testing.T) {
	cfg, _, err := parseFlags([]string{"--node", "a=http://127.0.0.1:1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var want proxy.Config
	want.SetDefaults()
	got := cfg
	got.Listen, got.Admin, got.ReusePort, got.AccessLog = "", "", false, false
	got.Pool.Nodes, got.Pool.HealthInterval, got.Pool.SelfAddrs = nil, 0, nil
	got.AdminHosts, got.ProxyProtocolFrom, got.TLS.Certs, got.Pool.NodeSRV, got.Pool.NodeDNS = nil, nil, nil, nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the flags' defaults differ from SetDefaults:\nflags       %+v\nSetDefaults %+v", got, want)
	}
}
