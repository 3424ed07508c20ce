package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// remoteRecorder is a listener that counts the source addresses of the
// connections it accepts.
type remoteRecorder struct {
	net.Listener
	mu  sync.Mutex
	ips map[string]int // guarded by mu
}

func (l *remoteRecorder) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		l.mu.Lock()
		l.ips[host]++
		l.mu.Unlock()
	}
	return c, err
}

func (l *remoteRecorder) count(ip string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ips[ip]
}

// TestRunIdleDirect holds idle sessions on an in-process node and reads
// this process. It is not parallel: other tests' sockets would blur the
// descriptor count. Both ends of every session live here, so a session
// costs two descriptors (client and node sockets).
func TestRunIdleDirect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &remoteRecorder{Listener: ln, ips: make(map[string]int)}
	n := &testNode{
		Node:   NewNode(NodeConfig{Name: "CB_1"}, zerolog.Nop()),
		addr:   ln.Addr().String(),
		served: make(chan error, 1),
		client: &http.Client{},
	}
	go n.serve(rec)
	t.Cleanup(func() { n.stop(t) })

	// warm sessions open (and echo once) and close before the baseline.
	const sessions, warm = 50, 10
	var progress bytes.Buffer
	rep, err := RunLoad(context.Background(), LoadConfig{
		Target: "http://" + n.addr, Scenario: ScenarioIdle, Sessions: sessions, PID: os.Getpid(),
		Hold: time.Second, SourceIPs: 2, Progress: &progress, Concurrency: warm,
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text.String())

	if rep.Failed() || rep.SessionsEnded != 0 {
		t.Fatalf("errors %v, violations %d, ended %d", rep.Errors, rep.StickyViolations, rep.SessionsEnded)
	}
	id := rep.Idle
	if id == nil || id.Sessions != sessions || id.Opened != sessions || id.Checked != sessions || id.SourceIPs != 2 {
		t.Fatalf("idle %+v", id)
	}
	if id.Hold < time.Second || rep.Elapsed > 30*time.Second {
		t.Errorf("held %v, run took %v", id.Hold, rep.Elapsed)
	}
	b, l := id.Baseline, id.Loaded
	if b.RSSKiB <= 0 || l.RSSKiB <= 0 || b.Threads <= 0 || l.Threads <= 0 || b.FDs <= 0 || l.FDLimit <= 0 {
		t.Errorf("readings %+v, %+v", b, l)
	}
	// The per-session figures come from the readings...
	if got := id.FDsPerSession() * sessions; math.Abs(got-float64(l.FDs-b.FDs)) > 1e-9 {
		t.Errorf("descriptors per session %.3f × %d != %d - %d", id.FDsPerSession(), sessions, l.FDs, b.FDs)
	}
	if got := id.RSSPerSessionKiB() * sessions; math.Abs(got-float64(l.RSSKiB-b.RSSKiB)) > 1e-6 {
		t.Errorf("RSS per session %.3f × %d != %d - %d", id.RSSPerSessionKiB(), sessions, l.RSSKiB, b.RSSKiB)
	}
	// ... and the readings saw the sessions: two sockets each here, one in
	// a process that holds only one end (tether).
	if per := id.FDsPerSession(); per < 1 || per > 3 {
		t.Errorf("descriptors per session %.2f (%d → %d), want 1..3", per, b.FDs, l.FDs)
	}
	if id.SessionsAtFDLimit() <= 0 {
		t.Errorf("sessions at the limit %d", id.SessionsAtFDLimit())
	}

	// One node: two GETs (the second repeats the cookie), the warm-up's
	// upgrades and echoes, then one upgrade and two echoes per session.
	if len(rep.Nodes) != 1 || rep.Nodes[0] != (NodeReport{Node: "CB_1", Requests: 2 + warm + sessions, WSSessions: warm + sessions, WSMessages: warm + 2*sessions}) {
		t.Errorf("nodes %+v", rep.Nodes)
	}
	if st := n.Stats(); st.WSTotal != warm+sessions || st.WSMessages != warm+2*sessions {
		t.Errorf("node saw %d WebSockets, %d messages", st.WSTotal, st.WSMessages)
	}
	waitFor(t, func() bool { return n.Stats().WSOpen == 0 })
	// Sessions alternate source addresses; the GETs use the default one.
	if a, b := rec.count("127.0.0.1"), rec.count("127.0.0.2"); a != 1+(warm+sessions)/2 || b != (warm+sessions)/2 {
		t.Errorf("connections from 127.0.0.1: %d, 127.0.0.2: %d", a, b)
	}
	if !strings.Contains(progress.String(), "idle: opening 50/50 sessions, 0 failed") ||
		!strings.Contains(progress.String(), "idle: checking 50/50 sessions, 0 failed") {
		t.Errorf("progress %q", progress.String())
	}
	if !strings.Contains(text.String(), "descriptors") || !strings.Contains(text.String(), "\nOK\n") {
		t.Error("text report lacks the descriptors or the verdict")
	}

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Scenario string `json:"scenario"`
		Idle     struct {
			Opened        int     `json:"opened"`
			FDsPerSession float64 `json:"fds_per_session"`
			RSSPerSession float64 `json:"rss_per_session_kib"`
			Loaded        struct {
				FDs int `json:"fds"`
			} `json:"loaded"`
		} `json:"idle"`
		Failed bool `json:"failed"`
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatalf("JSON %s: %v", js.String(), err)
	}
	if got.Scenario != ScenarioIdle || got.Idle.Opened != sessions || got.Idle.FDsPerSession != id.FDsPerSession() ||
		got.Idle.RSSPerSession != id.RSSPerSessionKiB() || got.Idle.Loaded.FDs != l.FDs || got.Failed {
		t.Errorf("JSON report %s", js.String())
	}
}

// TestRunIdleNonStickyProxy runs the idle scenarios through a proxy that
// misroutes by the cookie: sessions (idle-http: their second GET) land on
// the node that does not own them.
func TestRunIdleNonStickyProxy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		scenario, err409 string
	}{
		{ScenarioIdle, "ws_status_409"},
		{ScenarioIdleHTTP, "http_status_409"},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			t.Parallel()
			a := startNode(t, NodeConfig{Name: "CB_1"})
			b := startNode(t, NodeConfig{Name: "CB_2"})
			proxy := contraryProxy(t, a, b)
			rep, err := RunLoad(context.Background(), LoadConfig{
				Target: proxy.URL, Scenario: tc.scenario, Sessions: 8, PID: os.Getpid(), Hold: 100 * time.Millisecond,
			}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Failed() || rep.StickyViolations == 0 || rep.Errors[tc.err409] == 0 || rep.Idle.Opened == 8 {
				t.Fatalf("violations %d, errors %v, opened %d; want a failed run", rep.StickyViolations, rep.Errors, rep.Idle.Opened)
			}
		})
	}
}

func TestRunIdleDeadTarget(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	target := n.url
	n.stop(t)
	rep, err := RunLoad(context.Background(), LoadConfig{
		Target: target, Scenario: ScenarioIdle, Sessions: 4, PID: os.Getpid(), Hold: 100 * time.Millisecond,
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Failed() || rep.Errors["http_refused"] != 1 || rep.Errors["idle_no_cookie"] != 1 || rep.Idle.Opened != 0 {
		t.Fatalf("errors %v, idle %+v", rep.Errors, rep.Idle)
	}
}

func TestIdleConfigValidate(t *testing.T) {
	t.Parallel()
	good := LoadConfig{Target: "http://127.0.0.1:8080", Scenario: ScenarioIdle, PID: 1}
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*LoadConfig)
		flag string
	}{
		{"no pid", func(c *LoadConfig) { c.PID = 0 }, "--pid"},
		{"too many sessions", func(c *LoadConfig) { c.Sessions = MaxIdleSessions + 1 }, "--sessions"},
		{"hold", func(c *LoadConfig) { c.Hold = -time.Second }, "--hold"},
		{"settle", func(c *LoadConfig) { c.Settle = -time.Second }, "--settle"},
		{"source ips", func(c *LoadConfig) { c.SourceIPs = MaxSourceIPs + 1 }, "--source-ips"},
		{"source ips on IPv6", func(c *LoadConfig) { c.Target, c.SourceIPs = "http://[::1]:8080", 2 }, "--source-ips"},
		{"concurrency", func(c *LoadConfig) { c.Concurrency = -1 }, "--concurrency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := good
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tc.flag) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.flag)
			}
		})
	}
	// A process that does not exist is refused before any traffic.
	c := good
	c.PID = math.MaxInt32 - 1
	if _, err := RunLoad(context.Background(), c, zerolog.Nop()); err == nil || !strings.HasPrefix(err.Error(), "--pid") {
		t.Errorf("RunLoad with no such process: %v", err)
	}
}

func TestProcStatParse(t *testing.T) {
	t.Parallel()
	status := []byte("Name:\ttether\nVmPeak:\t  20000 kB\nVmRSS:\t    1234 kB\nThreads:\t7\n")
	if v, ok := statusField(status, "VmRSS:"); !ok || v != 1234 {
		t.Errorf("VmRSS = %d, %v", v, ok)
	}
	if v, ok := statusField(status, "Threads:"); !ok || v != 7 {
		t.Errorf("Threads = %d, %v", v, ok)
	}
	if _, ok := statusField(status, "VmSwap:"); ok {
		t.Error("VmSwap found")
	}
	limits := []byte("Limit                     Soft Limit           Hard Limit           Units\n" +
		"Max processes             95000                95000                processes\n" +
		"Max open files            1024                 20000                files\n")
	if v := openFilesLimit(limits); v != 1024 {
		t.Errorf("open files = %d", v)
	}
	if v := openFilesLimit([]byte("Max open files            unlimited            unlimited            files\n")); v != 0 {
		t.Errorf("unlimited open files = %d", v)
	}

	st, err := ReadProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.RSSKiB <= 0 || st.FDs < 3 || st.Threads < 1 || st.FDLimit < int64(st.FDs) {
		t.Errorf("own reading %+v", st)
	}
}
