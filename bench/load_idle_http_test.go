package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestRunIdleHTTPDirect holds idle keep-alive connections on an in-process
// node and reads this process, its Go heap from a profiler beside it. Not
// parallel, as TestRunIdleDirect.
func TestRunIdleHTTPDirect(t *testing.T) {
	n := startNode(t, NodeConfig{Name: "CB_1"})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	prof := httptest.NewServer(mux)
	t.Cleanup(prof.Close)

	const conns = 40
	var progress bytes.Buffer
	rep, err := RunLoad(context.Background(), LoadConfig{
		Target: n.url, Scenario: ScenarioIdleHTTP, Sessions: conns, PID: os.Getpid(), Pprof: prof.URL,
		Hold: 300 * time.Millisecond, SourceIPs: 2, Progress: &progress,
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
	if id == nil || id.Opened != conns || id.Checked != conns || id.Noun != "connections" {
		t.Fatalf("idle %+v", id)
	}
	// Both ends of each connection are in this process.
	if per := id.FDsPerSession(); per < 1 || per > 3 {
		t.Errorf("descriptors per connection %.2f, want 1..3", per)
	}
	if id.HeapBaseline <= 0 || id.HeapLoaded <= 0 {
		t.Errorf("heap readings %d, %d", id.HeapBaseline, id.HeapLoaded)
	}
	if got := id.HeapPerSessionKiB() * conns * 1024; got != float64(id.HeapLoaded-id.HeapBaseline) {
		t.Errorf("heap per connection %.3f KiB × %d != %d - %d", id.HeapPerSessionKiB(), conns, id.HeapLoaded, id.HeapBaseline)
	}
	// Two GETs collect the cookie, one per connection warms the target up
	// (as many as connections here, under Concurrency); then two per
	// connection, the second on the connection the first kept open (get
	// checks that it stayed so).
	if len(rep.Nodes) != 1 || rep.Nodes[0] != (NodeReport{Node: "CB_1", Requests: 2 + 3*conns}) {
		t.Errorf("nodes %+v", rep.Nodes)
	}
	if st := n.Stats(); st.Requests != 2+3*conns {
		t.Errorf("node saw %d requests", st.Requests)
	}
	for _, want := range []string{"idle-http: opening 40/40 connections, 0 failed", "idle-http: checking 40/40 connections, 0 failed"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress %q lacks %q", progress.String(), want)
		}
	}
	if !strings.Contains(text.String(), "Go heap KiB") || !strings.Contains(text.String(), "per connection") {
		t.Error("text report lacks the heap line")
	}

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Scenario string `json:"scenario"`
		Idle     struct {
			Opened     int     `json:"opened"`
			HeapLoaded int64   `json:"heap_loaded_bytes"`
			HeapPer    float64 `json:"heap_per_session_kib"`
		} `json:"idle"`
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatalf("JSON %s: %v", js.String(), err)
	}
	if got.Scenario != ScenarioIdleHTTP || got.Idle.Opened != conns || got.Idle.HeapLoaded != id.HeapLoaded || got.Idle.HeapPer != id.HeapPerSessionKiB() {
		t.Errorf("JSON report %s", js.String())
	}
}

func TestIdleHTTPConfigValidate(t *testing.T) {
	t.Parallel()
	good := LoadConfig{Target: "http://127.0.0.1:8080", Scenario: ScenarioIdleHTTP, PID: 1, Pprof: "http://127.0.0.1:9090"}
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*LoadConfig)
		flag string
	}{
		{"https target", func(c *LoadConfig) { c.Target, c.Insecure = "https://127.0.0.1:8443", true }, "--target"},
		{"no pid", func(c *LoadConfig) { c.PID = 0 }, "--pid"},
		{"too many", func(c *LoadConfig) { c.Sessions = MaxIdleSessions + 1 }, "--sessions"},
		{"pprof off loopback", func(c *LoadConfig) { c.Pprof = "http://192.0.2.1:9090" }, "--pprof"},
		{"pprof not a URL", func(c *LoadConfig) { c.Pprof = "127.0.0.1:9090" }, "--pprof"},
		{"rate", func(c *LoadConfig) { c.Rate = 1 }, "--rate"},
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
}

func TestMemStat(t *testing.T) {
	t.Parallel()
	prof := []byte("heap profile: 1: 2 [3: 4] @ heap/2\n\n# runtime.MemStats\n# Alloc = 123\n# HeapAlloc = 4567\n# HeapSys = 8\n")
	if v, ok := memStat(prof, "HeapAlloc"); !ok || v != 4567 {
		t.Errorf("HeapAlloc = %d, %v", v, ok)
	}
	if _, ok := memStat(prof, "StackInuse"); ok {
		t.Error("StackInuse found")
	}
}
