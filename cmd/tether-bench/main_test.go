package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // a substring, "" for none
		stderr string
	}{
		{"help", []string{"--help"}, 0, "tether-bench node", ""},
		{"no command", nil, 2, "", "missing command"},
		{"unknown command", []string{"frob"}, 2, "", `unknown command "frob"`},
		{"node help", []string{"node", "--help"}, 0, "-poll-wait duration", ""},
		{"load help", []string{"load", "-h"}, 0, "(default 8)", ""},
		{"bad flag", []string{"node", "--bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{"extra argument", []string{"load", "extra"}, 2, "", `unexpected argument "extra"`},
		{"not loopback", []string{"node", "--listen", "0.0.0.0:0"}, 2, "", "--listen"},
		{"bad poll wait", []string{"node", "--poll-wait", "-1s"}, 2, "", "--poll-wait"},
		{"bad log level", []string{"node", "--log-level", "loud"}, 2, "", "--log-level"},
		{"bad scenario", []string{"load", "--scenario", "soak"}, 2, "", "--scenario"},
		{"bad target", []string{"load", "--target", "http://192.0.2.1:80"}, 2, "", "--target"},
		{"no conns", []string{"load", "--conns", "0"}, 2, "", "--conns"},
		{"bad duration", []string{"load", "--duration", "soon"}, 2, "", "-duration"},
		{"bad rate", []string{"load", "--rate", "-1"}, 2, "", "--rate"},
		{"no snapshot bytes", []string{"load", "--snapshot-bytes", "0"}, 2, "", "--snapshot-bytes"},
		{"tls-handshake over http", []string{"load", "--scenario", "tls-handshake"}, 2, "", "https://"},
		{"plot of idle", []string{"load", "--scenario", "idle", "--pid", "1", "--plot", "x.png"}, 2, "", "--plot"},
		{"load help names the scenarios", []string{"load", "--help"}, 0, "tls-handshake", ""},
		{"compare bad scenario", []string{"compare", "--scenarios", "http,tls"}, 2, "", "--scenarios"},
		{"compare help", []string{"compare", "--help"}, 0, "-tls-conns", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tc.stdout)
			}
			if tc.stderr != "" {
				if !strings.Contains(stderr.String(), tc.stderr) {
					t.Errorf("stderr %q lacks %q", stderr.String(), tc.stderr)
				}
				if n := strings.Count(stderr.String(), "\n"); n != 1 {
					t.Errorf("stderr has %d lines, want one: %q", n, stderr.String())
				}
			}
		})
	}
}

// TestNodeAndLoad runs a node and a short load against it, as the demo does.
func TestNodeAndLoad(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var nodeOut, nodeErr bytes.Buffer
	nodeDone := make(chan int, 1)
	go func() {
		nodeDone <- run(ctx, []string{"node", "--name", "CB_T", "--listen", addr, "--log-format", "json"}, &nodeOut, &nodeErr)
	}()
	up := false
	for range 500 {
		if resp, err := http.Get("http://" + addr + "/cobrowse/health"); err == nil {
			resp.Body.Close()
			up = resp.StatusCode == 200 && resp.Header.Get("X-Node") == "CB_T"
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !up {
		t.Fatal("node did not come up")
	}

	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"load", "--target", "http://" + addr, "--duration", "300ms",
		"--conns", "2", "--sessions", "2", "--json", "--log-level", "warn"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("load exit %d: %s %s", code, stdout.String(), stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "{") || !strings.Contains(stdout.String(), `"node":"CB_T"`) {
		t.Errorf("load JSON %q", stdout.String())
	}

	// An open loop of co-browse sessions, with its plot.
	plot := filepath.Join(t.TempDir(), "cobrowse.png")
	stdout.Reset()
	stderr.Reset()
	code = run(context.Background(), []string{"load", "--target", "http://" + addr, "--scenario", "cobrowse", "--duration", "1100ms",
		"--sessions", "2", "--rate", "100", "--snapshot-every", "10", "--snapshot-bytes", "8192", "--plot", plot, "--log-level", "warn"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("cobrowse exit %d: %s %s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{"open loop at 100/s", "snapshot ", "\nOK\n"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("report lacks %q: %s", want, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "load cobrowse 1s/1.1s: ws ") {
		t.Errorf("no progress line: %q", stderr.String())
	}
	if fi, err := os.Stat(plot); err != nil || fi.Size() < 1000 {
		t.Errorf("plot %s: %v", plot, err)
	}

	cancel()
	select {
	case code := <-nodeDone:
		if code != 0 {
			t.Errorf("node exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node did not stop")
	}
	if !strings.Contains(nodeErr.String(), `"addr":"`+addr+`"`) {
		t.Errorf("node log lacks its address: %q", nodeErr.String())
	}
}
