package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestRunFailover opens sessions through a real tether on a node, kills
// the node's health and checks that every client was told 1012, and that
// the report adds up. A second run on the same tether shows that the node
// is switched back on.
func TestRunFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs tether")
	}
	t.Parallel()
	node1, n1 := failoverNode(t, "CB_1")
	_, n2 := failoverNode(t, "CB_2")
	target, admin := startTetherBinary(t, "--health-interval", "100ms", "--health-timeout", "300ms",
		"--node", "CB_1="+n1, "--node", "CB_2="+n2)

	const sessions = 20
	cfg := FailoverConfig{
		Load:  LoadConfig{Target: target, Sessions: sessions, SourceIPs: 2, Concurrency: 8},
		Admin: admin, Node: "CB_1", NodeURL: n1,
	}
	for run := range 2 {
		var progress bytes.Buffer
		cfg.Load.Progress = &progress
		rep, err := RunFailover(context.Background(), cfg, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		var text bytes.Buffer
		if err := rep.WriteText(&text); err != nil {
			t.Fatal(err)
		}
		t.Logf("run %d:\n%s", run, text.String())

		if rep.Failed() || rep.ErrorCount() != 0 || rep.Opened != sessions || rep.Told != sessions || rep.Sessions != sessions {
			t.Fatalf("run %d: failed %v, errors %v, opened %d, told %d", run, rep.Failed(), rep.Errors, rep.Opened, rep.Told)
		}
		if rep.TetherSessions < sessions {
			t.Errorf("tether counted %d sessions on CB_1, want at least %d", rep.TetherSessions, sessions)
		}
		checkFailoverArithmetic(t, rep)
		if !strings.Contains(progress.String(), "20/20 sessions open on CB_1") ||
			!strings.Contains(text.String(), "OK: every session told 1012 within 1s of detection") {
			t.Errorf("progress %q; report lacks the verdict", progress.String())
		}
		checkFailoverJSON(t, rep)
	}
	// The node is healthy again once the runs are over.
	resp, err := http.Get(n1 + PathHealth)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("CB_1 health after the runs: %d", resp.StatusCode)
	}
	if st := node1.Stats(); st.WSTotal != 2*sessions {
		t.Errorf("CB_1 saw %d WebSockets, want %d", st.WSTotal, 2*sessions)
	}

	// A node tether does not have, or a switch that is another node's, is
	// refused before any session opens.
	for _, tc := range []struct {
		name, node, url, want string
	}{
		{"unknown node", "CB_9", n1, `--kill-node "CB_9": tether has no such node (it has CB_1, CB_2)`},
		{"other node's switch", "CB_1", n2, `is node "CB_2", not --kill-node "CB_1"`},
	} {
		c := cfg
		c.Node, c.NodeURL, c.Load.Progress = tc.node, tc.url, nil
		if _, err := RunFailover(context.Background(), c, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// checkFailoverArithmetic checks that the figures of rep agree.
func checkFailoverArithmetic(t *testing.T, rep *FailoverReport) {
	t.Helper()
	l := rep.Notify
	// Three significant digits, and the histogram's microseconds.
	near := func(a, b time.Duration) bool {
		d := a - b
		return d.Abs() <= b.Abs()/500+2*time.Microsecond
	}
	switch {
	case rep.Flip.IsZero() || !rep.Detected.After(rep.Flip):
		t.Errorf("switched off at %v, detected at %v", rep.Flip, rep.Detected)
	case rep.DetectionDelay() > 10*time.Second:
		t.Errorf("detection %v with 100ms probes", rep.DetectionDelay())
	case l.Count != int64(rep.Told):
		t.Errorf("%d latencies for %d told", l.Count, rep.Told)
	case rep.First < 0 || rep.First > rep.Last || rep.Last > rep.Limit():
		t.Errorf("first %v, last %v, limit %v", rep.First, rep.Last, rep.Limit())
	case !near(l.Min, rep.First) || !near(l.Max, rep.Last):
		t.Errorf("histogram min %v max %v, exact %v %v", l.Min, l.Max, rep.First, rep.Last)
	case l.P50 > l.P90 || l.P90 > l.P99 || !near(max(l.P99, rep.Last), rep.Last) || !near(min(l.P50, rep.First), rep.First):
		t.Errorf("percentiles %v %v %v outside %v..%v", l.P50, l.P90, l.P99, rep.First, rep.Last)
	case rep.MaxFromFlip != rep.DetectionDelay()+rep.Last:
		t.Errorf("max from the switch %v != detection %v + last %v", rep.MaxFromFlip, rep.DetectionDelay(), rep.Last)
	}
}

// checkFailoverJSON checks the JSON report against rep.
func checkFailoverJSON(t *testing.T, rep *FailoverReport) {
	t.Helper()
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var got failoverJSON
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatalf("JSON %s: %v", js.String(), err)
	}
	if got.Scenario != ScenarioFailover || got.Told != rep.Told || got.Failed || got.ErrorCount != 0 ||
		got.DetectionDelayUS != rep.DetectionDelay().Microseconds() || got.MaxFromFlipUS != rep.MaxFromFlip.Microseconds() ||
		got.NotifyUS.Count != int64(rep.Told) || got.NotifyUS.Max != rep.Last.Microseconds() || got.LimitUS != 1e6 ||
		got.Detected == nil || !got.Detected.Equal(rep.Detected) {
		t.Errorf("JSON report %s", js.String())
	}
}

func TestFailoverVerdict(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ok := FailoverReport{Sessions: 3, Opened: 3, Told: 3, Flip: now, Detected: now.Add(time.Second), Last: 900 * time.Millisecond}
	for _, tc := range []struct {
		name   string
		edit   func(*FailoverReport)
		failed bool
	}{
		{"all told in time", func(*FailoverReport) {}, false},
		{"one not told", func(r *FailoverReport) { r.Told = 2; r.Errors = map[string]int64{"failover_not_told": 1} }, true},
		{"told late", func(r *FailoverReport) { r.Last = 1100 * time.Millisecond }, true},
		{"late but spread", func(r *FailoverReport) { r.Last, r.ExpectSpread = 2900*time.Millisecond, 2*time.Second }, false},
		{"late past the spread", func(r *FailoverReport) { r.Last, r.ExpectSpread = 3100*time.Millisecond, 2*time.Second }, true},
		{"not detected", func(r *FailoverReport) { r.Detected = time.Time{} }, true},
		{"open failed", func(r *FailoverReport) { r.Opened, r.Told = 2, 2; r.Errors = map[string]int64{"ws_status_409": 1} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := ok
			tc.edit(&r)
			if r.Failed() != tc.failed {
				t.Errorf("Failed = %v, want %v", r.Failed(), tc.failed)
			}
		})
	}
}

func TestFailoverConfigValidate(t *testing.T) {
	t.Parallel()
	good := FailoverConfig{
		Load:  LoadConfig{Target: "http://127.0.0.1:8080"},
		Admin: "http://127.0.0.1:9090", Node: "CB_Server_1", NodeURL: "http://127.0.0.1:8700/",
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*FailoverConfig)
		flag string
	}{
		{"other scenario", func(c *FailoverConfig) { c.Load.Scenario = ScenarioIdle }, "--scenario"},
		{"target", func(c *FailoverConfig) { c.Load.Target = "http://192.0.2.1:8080" }, "--target"},
		{"no admin", func(c *FailoverConfig) { c.Admin = "" }, "--admin"},
		{"admin off loopback", func(c *FailoverConfig) { c.Admin = "http://192.0.2.1:9090" }, "--admin"},
		{"node url scheme", func(c *FailoverConfig) { c.NodeURL = "https://127.0.0.1:8700" }, "--node-url"},
		{"no node", func(c *FailoverConfig) { c.Node = "" }, "--kill-node"},
		{"spread", func(c *FailoverConfig) { c.ExpectSpread = -time.Second }, "--expect-spread"},
		{"sessions", func(c *FailoverConfig) { c.Load.Sessions = MaxLoadSessions + 1 }, "--sessions"},
		{"source ips", func(c *FailoverConfig) { c.Load.SourceIPs = MaxSourceIPs + 1 }, "--source-ips"},
		{"source ips on IPv6", func(c *FailoverConfig) { c.Load.Target, c.Load.SourceIPs = "http://[::1]:8080", 2 }, "--source-ips"},
		{"concurrency", func(c *FailoverConfig) { c.Load.Concurrency = MaxIdleConcurrency + 1 }, "--concurrency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := good
			tc.edit(&c)
			if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.flag) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.flag)
			}
		})
	}
	// RunLoad points the scenario at RunFailover.
	if _, err := RunLoad(context.Background(), LoadConfig{Target: good.Load.Target, Scenario: ScenarioFailover}, zerolog.Nop()); err == nil ||
		!strings.Contains(err.Error(), "RunFailover") {
		t.Errorf("RunLoad failover: %v", err)
	}
}

// failoverNode serves a fake node on a loopback port chosen now and
// returns it with its base URL.
func failoverNode(t *testing.T, name string) (*Node, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := NewNode(NodeConfig{Name: name}, zerolog.Nop())
	served := make(chan error, 1)
	go func() { served <- n.Serve(ln) }()
	t.Cleanup(func() {
		_ = n.Close()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Errorf("node %s did not stop", name)
		}
	})
	return n, "http://" + ln.Addr().String()
}

// startTetherBinary builds tether, runs it on loopback ports chosen by
// itself with args, and returns the base URLs of its listener and its
// admin listener, read from its log. Cleanup stops it.
func startTetherBinary(t *testing.T, args ...string) (target, admin string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tether")
	build := exec.Command("go", "build", "-o", bin, "github.com/tether-lb/tether/cmd/tether")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tether: %v\n%s", err, out)
	}
	args = append([]string{"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-format", "json", "--access-log=false"}, args...)
	cmd := exec.Command(bin, args...)
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("tether log:\n%s", logs.String())
		}
	})
	for range 500 {
		for _, line := range strings.Split(logs.String(), "\n") {
			var m struct{ Message, Addr string }
			if json.Unmarshal([]byte(line), &m) != nil {
				continue
			}
			switch m.Message {
			case "listening":
				target = "http://" + m.Addr
			case "admin listening":
				admin = "http://" + m.Addr
			}
		}
		if target != "" && admin != "" {
			return target, admin
		}
		select {
		case <-exited:
			t.Fatalf("tether exited:\n%s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("tether logged no listener addresses in 10s:\n%s", logs.String())
	return "", ""
}

// lockedBuffer is a bytes.Buffer written by a child process's copier and
// read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer // guarded by mu
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
