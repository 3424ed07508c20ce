package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseWSGen(t *testing.T) {
	t.Parallel()
	us := time.Microsecond
	for _, tc := range []struct {
		file string // under testdata/wsgen: wsgen's stdout, as captured
		want WSGenResult
	}{
		{"tether.txt", WSGenResult{Sessions: 32, MsgBytes: 256, Elapsed: 2 * time.Second, Connected: 32, Messages: 44539,
			PerSecond: 22264, P50: 1312 * us, P90: 2112 * us, P99: 4736 * us, Max: 12295 * us}},
		// Every upgrade refused: a cookie naming another node (409).
		{"conflict.txt", WSGenResult{Sessions: 4, MsgBytes: 200, Elapsed: time.Second, UpgradeErrors: 20, Reconnects: 16}},
		// Nothing listening.
		{"refused.txt", WSGenResult{Sessions: 2, MsgBytes: 256, Elapsed: 501 * time.Millisecond, IOErrors: 10, Reconnects: 8}},
		// The node stopped during the run.
		{"node-killed.txt", WSGenResult{Sessions: 8, MsgBytes: 256, Elapsed: 2001 * time.Millisecond, Connected: 8, Messages: 38365,
			PerSecond: 19176.5, P50: 196 * us, P90: 296 * us, P99: 560 * us, Max: 15257 * us, IOErrors: 40, Reconnects: 32}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			out, err := os.ReadFile(filepath.Join("testdata", "wsgen", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseWSGen(out)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseWSGenRefuses(t *testing.T) {
	t.Parallel()
	line, err := os.ReadFile(filepath.Join("testdata", "wsgen", "tether.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, out string }{
		{"empty", ""},
		{"usage", "usage: wsgen -a 127.0.0.1:PORT\n"},
		{"a field missing", strings.Replace(string(line), " timeouts=0", "", 1)},
		{"not a number", strings.Replace(string(line), "messages=44539", "messages=x", 1)},
		{"not key=value", strings.Replace(string(line), "rate=", "rate ", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if r, err := ParseWSGen([]byte(tc.out)); err == nil {
				t.Errorf("accepted: %+v", r)
			}
		})
	}
}

func TestWSGenArgs(t *testing.T) {
	t.Parallel()
	got := wsgenRun{Bin: "/d/wsgen", Addr: "127.0.0.1:8080", Sessions: 32, MsgBytes: 256, Duration: 1500 * time.Millisecond,
		Cookies: []string{"c=A", "c=B"}}.args()
	want := []string{"/d/wsgen", "-a", "127.0.0.1:8080", "-s", "32", "-m", "256", "-d", "1.500", "-k", "c=A", "-k", "c=B"}
	if !slices.Equal(got, want) {
		t.Errorf("args %q\nwant %q", got, want)
	}
}

// buildWSGen compiles wsgen into a temporary directory; it skips the test
// without a C compiler (CI installs gcc).
func buildWSGen(t *testing.T) string {
	t.Helper()
	bin, err := BuildWSGen(t.Context(), t.TempDir())
	if errors.Is(err, ErrNoCC) {
		t.Skip("no C compiler (cc) in PATH: wsgen is not built; install gcc")
	}
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestWSGenAgainstNode runs wsgen for a second with a few sessions against
// a node: echoes counted, none failed, and the node saw the messages.
func TestWSGenAgainstNode(t *testing.T) {
	t.Parallel()
	bin := buildWSGen(t)
	n := startNode(t, NodeConfig{Name: "CB_Server_1"})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, size := range []int{16, 300, 70_000} { // the three frame length forms
		r, err := wsgenRun{Bin: bin, Addr: n.addr, Sessions: 3, MsgBytes: size, Duration: 300 * time.Millisecond,
			Cookies: []string{DefaultCookie + "=CB_Server_1"}}.run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Messages == 0 || r.Connected != 3 || r.Errors() != 0 || r.Reconnects != 0 || r.P50 <= 0 || r.P99 < r.P50 {
			t.Errorf("%d-byte messages: %+v", size, r)
		}
		if r.Sessions != 3 || r.MsgBytes != size {
			t.Errorf("%d-byte messages: ran %d sessions of %d bytes", size, r.Sessions, r.MsgBytes)
		}
	}
	if st := n.Stats(); st.WSTotal != 9 || st.WSMessages == 0 {
		t.Errorf("node stats %+v", st)
	}
	// A cookie naming another node: every upgrade refused, and counted.
	r, err := wsgenRun{Bin: bin, Addr: n.addr, Sessions: 2, MsgBytes: 16, Duration: 300 * time.Millisecond,
		Cookies: []string{DefaultCookie + "=CB_Server_2"}}.run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Messages != 0 || r.Connected != 0 || r.UpgradeErrors == 0 {
		t.Errorf("refused upgrades: %+v", r)
	}
}

// TestWSGenRefusesOffLoopback checks that wsgen itself only talks to
// loopback, and that the Go side refuses first.
func TestWSGenRefusesOffLoopback(t *testing.T) {
	t.Parallel()
	bin := buildWSGen(t)
	if _, _, err := runGenerator(t.Context(), "", time.Second, []string{bin, "-a", "192.0.2.1:80", "-d", "0.1"}); err == nil ||
		!strings.Contains(err.Error(), "loopback") {
		t.Errorf("wsgen -a 192.0.2.1:80: %v", err)
	}
	if _, err := (wsgenRun{Bin: bin, Addr: "192.0.2.1:80", Sessions: 1, MsgBytes: 1, Duration: time.Second}).run(t.Context()); err == nil {
		t.Error("run accepted 192.0.2.1:80")
	}
}
