package e2e

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
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

// designFlags are the flags that DESIGN.md and README.md name.
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
// flag of the contract that the binary accepts.
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
	checked := 0
	for _, f := range designFlags {
		// A defined flag fails on its value or on --max-header-bytes 10;
		// an undefined one fails as undefined. Either way nothing starts.
		_, _, e := runTether(t, "--"+f+"=\x01bad", "--max-header-bytes", "10")
		if strings.Contains(e, "not defined") {
			continue
		}
		checked++
		if !strings.Contains(help, "--"+f+" ") && !strings.Contains(help, "--"+f+"\n") && !strings.Contains(help, "--"+f+"=") {
			t.Errorf("--help does not mention --%s, which tether accepts", f)
		}
	}
	if checked < 20 {
		t.Fatalf("only %d of the contract's flags are accepted", checked)
	}
}
