package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	t.Parallel()
	us, ms := time.Microsecond, time.Millisecond
	for _, tc := range []struct {
		file string // under testdata/wrk: wrk's stdout, as captured
		want WrkResult
	}{
		{"tether-header.txt", WrkResult{Requests: 37284, Elapsed: 2010 * ms, PerSecond: 18583.45,
			P50: 1490 * us, P75: 2200 * us, P90: 3210 * us, P99: 7530 * us}},
		{"tether-lua.txt", WrkResult{Requests: 31191, Elapsed: 2010 * ms, PerSecond: 15537.43,
			P50: 1760 * us, P75: 2680 * us, P90: 4430 * us, P99: 14770 * us}},
		// A cookie naming the other node: every answer a 409.
		{"non2xx.txt", WrkResult{Requests: 34828, Elapsed: 1100 * ms, PerSecond: 31681.78,
			P50: 170 * us, P75: 480 * us, P90: 3090 * us, P99: 37400 * us, Non2xx: 34828}},
		// The node stopped during the run.
		{"node-killed.txt", WrkResult{Requests: 18984, Elapsed: 3040 * ms, PerSecond: 6253.74,
			P50: 615 * us, P75: 980 * us, P90: 2620 * us, P99: 44070 * us, Read: 16, Write: 15531}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			out, err := os.ReadFile(filepath.Join("testdata", "wrk", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseWrk(out)
			if err != nil {
				t.Fatal(err)
			}
			near := func(a, b time.Duration) bool { return a-b < time.Nanosecond*10 && b-a < time.Nanosecond*10 }
			if got.Requests != tc.want.Requests || got.PerSecond != tc.want.PerSecond || !near(got.Elapsed, tc.want.Elapsed) ||
				!near(got.P50, tc.want.P50) || !near(got.P75, tc.want.P75) || !near(got.P90, tc.want.P90) || !near(got.P99, tc.want.P99) ||
				got.Non2xx != tc.want.Non2xx || got.Connect != tc.want.Connect || got.Read != tc.want.Read ||
				got.Write != tc.want.Write || got.Timeout != tc.want.Timeout {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if want := tc.want.Non2xx + tc.want.Read + tc.want.Write; got.Errors() != want {
				t.Errorf("errors %d, want %d", got.Errors(), want)
			}
		})
	}
}

func TestParseWrkRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, out string }{
		{"empty (wrk could not connect)", ""},
		{"no Requests/sec", "  10 requests in 1.00s, 1.00KB read\n"},
		{"no latency distribution", "  10 requests in 1.00s, 1.00KB read\nRequests/sec:     10.00\n"},
		{"bad time unit", "  10 requests in 1.00d, 1.00KB read\nRequests/sec:     10.00\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if r, err := ParseWrk([]byte(tc.out)); err == nil {
				t.Errorf("accepted: %+v", r)
			}
		})
	}
	// wrk prints long latencies in seconds and minutes.
	r, err := ParseWrk([]byte("  3 requests in 1.05m, 1KB read\n  Latency Distribution\n     50%    1.50s\n     99%    1.02m\nRequests/sec:      0.05\n"))
	if err != nil || r.P50 != 1500*time.Millisecond || r.P99 != time.Duration(1.02*float64(time.Minute)) || r.Elapsed != 63*time.Second {
		t.Errorf("got %+v, %v", r, err)
	}
}

func TestWrkArgs(t *testing.T) {
	t.Parallel()
	got := wrkRun{Bin: "wrk", Script: "/d/c.lua", Addr: "127.0.0.1:8080", Conns: 32, Duration: 1500 * time.Millisecond,
		Bytes: 1024, Cookies: []string{"c=A", "c=B"}}.args()
	want := []string{"wrk", "-t2", "-c32", "-d2s", "--latency", "-s", "/d/c.lua",
		"http://127.0.0.1:8080/cobrowse/resource?bytes=1024", "--", "c=A", "c=B"}
	if !slices.Equal(got, want) {
		t.Errorf("args %q\nwant %q", got, want)
	}
	if got := (wrkRun{Bin: "wrk", Conns: 1, Duration: time.Second}).args(); got[1] != "-t1" {
		t.Errorf("one connection: %q", got)
	}
}

// needWrk returns wrk's path, or fails: CI installs it (apt-get install -y
// wrk), so a missing one is a broken machine.
func needWrk(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("wrk")
	if err != nil {
		t.Fatal("wrk not found in PATH: install it with `apt-get update && apt-get install -y wrk`")
	}
	return path
}

// TestWrkAgainstNode runs wrk for a second against a node with the cookie
// script: its own cookie passes, the other node's is refused (409) on
// every request, which shows the script sets the header.
func TestWrkAgainstNode(t *testing.T) {
	t.Parallel()
	bin := needWrk(t)
	n := startNode(t, NodeConfig{Name: "CB_Server_1"})
	script, err := writeWrkScript(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		cookie  string
		refused bool
	}{
		{DefaultCookie + "=CB_Server_1", false},
		{DefaultCookie + "=CB_Server_2", true},
	} {
		r, err := wrkRun{Bin: bin, Script: script, Addr: n.addr, Conns: 4, Duration: time.Second, Bytes: 512,
			Cookies: []string{tc.cookie}}.run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case r.Requests == 0 || r.PerSecond <= 0 || r.P50 <= 0:
			t.Errorf("%s: %+v", tc.cookie, r)
		case !tc.refused && r.Errors() != 0:
			t.Errorf("%s: errors %+v", tc.cookie, r)
		case tc.refused && r.Non2xx != r.Requests:
			t.Errorf("%s: %d of %d requests refused, want all", tc.cookie, r.Non2xx, r.Requests)
		}
	}
	if got := n.Stats().Sessions409; got == 0 {
		t.Errorf("node answered no 409")
	}
}
