package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runTether runs the binary with args to its end and returns its exit
// status, stdout and stderr.
func runTether(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tetherBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("tether %q did not exit within 10s", args)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	}
	t.Fatalf("run tether: %v", err)
	return 0, "", ""
}

// TestBadFlags checks that a bad flag or node exits 2 with one line on
// stderr that names the flag and the bad value.
func TestBadFlags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		args  []string
		words []string // the line must contain each
	}{
		{"node without URL", []string{"--node", "bad"}, []string{"node", "bad"}},
		{"node with ftp URL", []string{"--node", "X=ftp://h"}, []string{"node", "ftp"}},
		{"max-header-bytes too small", []string{"--node", "A=http://127.0.0.1:1", "--max-header-bytes", "10"}, []string{"max-header-bytes", "10"}},
		{"negative timeout", []string{"--node", "A=http://127.0.0.1:1", "--header-timeout", "-1s"}, []string{"header-timeout"}},
		{"unknown flag", []string{"--no-such-flag"}, []string{"no-such-flag"}},
		{"listen port not a number", []string{"--node", "A=http://127.0.0.1:1", "--listen", "127.0.0.1:notaport"}, []string{"--listen", "notaport"}},
		{"tls-listen port out of range", []string{"--node", "A=http://127.0.0.1:1", "--tls-listen", "127.0.0.1:70000", "--tls-self-signed"}, []string{"--tls-listen", "70000"}},
		{"admin port not a number", []string{"--node", "A=http://127.0.0.1:1", "--admin", "127.0.0.1:http"}, []string{"--admin", "http"}},
		{"node port out of range", []string{"--node", "A=http://127.0.0.1:99999"}, []string{"node", "99999"}},
		{"node port 0", []string{"--node", "A=http://127.0.0.1:0"}, []string{"node", `"0"`}},
		{"backend-ca missing, no https node", []string{"--node", "A=http://127.0.0.1:1", "--backend-ca", "/nonexistent/ca.pem"}, []string{"--backend-ca", "/nonexistent/ca.pem"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runTether(t, tc.args...)
			if code != 2 {
				t.Fatalf("exit status %d, want 2; stderr %q", code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			line := strings.TrimSuffix(stderr, "\n")
			if lines := strings.Split(line, "\n"); line == "" || len(lines) != 1 {
				t.Fatalf("stderr has %d lines, want exactly one; the first %q, the last %q", len(lines), lines[0], lines[len(lines)-1])
			}
			for _, w := range tc.words {
				if !strings.Contains(line, w) {
					t.Errorf("stderr %q does not name %q", line, w)
				}
			}
		})
	}
}

// designFlags are the flags that README.md and docs/ARCHITECTURE.md name.
var designFlags = []string{
	"listen", "tls-listen", "cert", "key", "node", "admin", "config",
	"sticky-cookie", "sticky-param",
	"health-path", "health-interval", "health-timeout", "rise", "fall",
	"connect-timeout", "upstream-timeout", "idle-timeout", "header-timeout",
	"max-header-bytes", "max-conns", "backend-ca", "backend-insecure",
	"log-level", "log-format", "access-log",
	"pool-max-idle", "pool-idle-timeout", "write-timeout", "body-timeout", "ws-idle-timeout",
}

// TestHelp checks that --help exits 0, is printed once, and explains every
// flag of the contract, each of which the binary accepts.
func TestHelp(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runTether(t, "--help")
	if code != 0 {
		t.Fatalf("--help: exit status %d, want 0", code)
	}
	help := stdout + stderr
	if n := strings.Count(help, "Usage:"); n != 1 {
		t.Errorf("--help printed its text %d times, want once", n)
	}
	for _, f := range designFlags {
		// A defined flag fails on its value or on --max-header-bytes 10;
		// an undefined one fails as undefined. Either way nothing starts.
		if _, _, e := runTether(t, "--"+f+"=\x01bad", "--max-header-bytes", "10"); strings.Contains(e, "not defined") {
			t.Errorf("tether does not accept --%s: %s", f, strings.TrimSpace(e))
			continue
		}
		if !strings.Contains(help, "--"+f+" ") && !strings.Contains(help, "--"+f+"\n") && !strings.Contains(help, "--"+f+"=") {
			t.Errorf("--help does not mention --%s, which tether accepts", f)
		}
	}
}

// TestBadConfigExits: bad values from flags and from the config file exit 2
// with one line that names the key and the value, and a node URL's password
// never reaches the output.
func TestBadConfigExits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const node = "--node=A=http://127.0.0.1:1"
	cases := []struct {
		name  string
		args  []string
		yaml  string // written to a file given with --config, when set
		words []string
		never []string
	}{
		{name: "negative drain-timeout", args: []string{node, "--drain-timeout", "-1s"}, words: []string{"--drain-timeout", "-1s"}},
		{name: "negative drain-timeout in file", yaml: "drain-timeout: -1s\n", words: []string{"drain-timeout", "-1s"}},
		{name: "max-conns below -1", args: []string{node, "--max-conns", "-7"}, words: []string{"--max-conns", "-7"}},
		{name: "tls-max-handshakes below -1 in file", yaml: "tls-max-handshakes: -3\n", words: []string{"tls-max-handshakes", "-3"}},
		{name: "splice-loops below -1", args: []string{node, "--splice-loops", "-100"}, words: []string{"--splice-loops", "-100"}},
		{name: "pool-max-idle below -1 in file", yaml: "pool-max-idle: -5\n", words: []string{"pool-max-idle", "-5"}},
		{name: "count that is not a number", args: []string{node, "--max-conns", "lots"}, words: []string{"--max-conns", `"lots" is not a whole number`}},
		{name: "count that is not a number in file", yaml: "max-conns: lots\n", words: []string{"--config", "max-conns", `"lots" is not a whole number`}},
		{name: "duration without a unit in file", yaml: "header-timeout: 10\n", words: []string{"header-timeout", `"10" is not a duration`}},
		{name: "listen given a list", yaml: "listen: [127.0.0.1:0, 127.0.0.1:0]\n", words: []string{"listen: expected one address, got a list"}},
		{name: "node URL with a password", args: []string{"--node", "A=http://admin:s3cret@127.0.0.1:1"}, words: []string{"--node", "credentials"}, never: []string{"s3cret"}},
		{name: "node URL with a password in file", yaml: "node: [A=http://admin:s3cret@127.0.0.1:1]\n", words: []string{"--node", "credentials"}, never: []string{"s3cret"}},
		{name: "node URL with a password, no name", args: []string{"--node", "http://admin:s3cret@127.0.0.1:1"}, words: []string{"--node", "NAME=URL"}, never: []string{"s3cret"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := tc.args
			if tc.yaml != "" {
				body := tc.yaml
				if !strings.Contains(body, "node:") {
					body = "node: [A=http://127.0.0.1:1]\n" + body
				}
				p := filepath.Join(dir, fmt.Sprintf("tether%d.yaml", i))
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append([]string{"--config", p}, args...)
			}
			// Should the value be accepted, tether listens on ports of its
			// own choosing and stops within runTether's bound.
			args = append(args, "--admin=")
			if !strings.Contains(tc.yaml, "listen:") {
				args = append(args, "--listen=127.0.0.1:0")
			}
			code, stdout, stderr := runTether(t, args...)
			if code != 2 {
				t.Fatalf("exit status %d, want 2; stderr %q", code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			line := strings.TrimSuffix(stderr, "\n")
			if line == "" || strings.Contains(line, "\n") {
				t.Fatalf("stderr %q, want exactly one line", stderr)
			}
			for _, w := range tc.words {
				if !strings.Contains(line, w) {
					t.Errorf("stderr %q does not name %q", line, w)
				}
			}
			for _, w := range tc.never {
				if strings.Contains(line, w) {
					t.Errorf("stderr %q shows %q", line, w)
				}
			}
		})
	}
}

// TestReloadBadConfigKeepsRunning: SIGHUP with a file that names a node URL
// with a password, or a negative drain timeout, keeps the running
// configuration and logs why, without the password. startTether sets
// --listen and --admin as flags, which win over the file, so the list case
// uses another key.
func TestReloadBadConfigKeepsRunning(t *testing.T) {
	n1 := startNode(t, node1, 0)
	path := filepath.Join(t.TempDir(), "tether.yaml")
	writeConfig(t, path, []*testNode{n1}, "health-interval: 1h\n")
	tt := startTether(t, nil, "--config", path)

	for i, bad := range []struct{ body, why string }{
		{fmt.Sprintf("node:\n  - %s=http://admin:s3cret@%s\n", node2, n1.addr), "credentials"},
		{fmt.Sprintf("node:\n  - %s=http://%s\ndrain-timeout: -1s\n", node2, n1.addr), "--drain-timeout -1s"},
		{fmt.Sprintf("node:\n  - %s=http://%s\nsticky-cookie: [a, b]\n", node2, n1.addr), "sticky-cookie: expected one name, got a list"},
	} {
		if err := os.WriteFile(path, []byte(bad.body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := tt.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if !waitFor(3*time.Second, func() bool { return strings.Count(tt.stderr.String(), "reload failed") == i+1 }) {
			t.Fatalf("bad file %d: no reload failure logged:\n%s", i, tail(tt.stderr.String(), 2000))
		}
		logged := tt.stderr.String()
		if strings.Contains(logged, "s3cret") {
			t.Fatalf("the password reached the log:\n%s", tail(logged, 2000))
		}
		if last := logged[strings.LastIndex(logged, "reload failed")-300:]; !strings.Contains(last, bad.why) {
			t.Errorf("bad file %d: the failure does not say %q:\n%s", i, bad.why, tail(logged, 1000))
		}
		// The running configuration still routes to the first node.
		c := dialRaw(t, tt.addr)
		if r := c.do(t, get("/cobrowse/x", "")); r.status != 200 || r.get("X-Node") != node1 {
			t.Fatalf("after bad file %d: %d from %q, want 200 from %s", i, r.status, r.get("X-Node"), node1)
		}
	}
}
