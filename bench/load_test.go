package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestSummarize(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	for _, tc := range []struct {
		name   string
		values []time.Duration
		want   LatencySummary
	}{
		{"empty", nil, LatencySummary{}},
		{"one", []time.Duration{3 * ms}, LatencySummary{Count: 1, Min: 3 * ms, Mean: 3 * ms, P50: 3 * ms, P90: 3 * ms, P99: 3 * ms, P999: 3 * ms, Max: 3 * ms}},
		{
			"99 fast 1 slow",
			append(repeat(ms, 99), 100*ms),
			LatencySummary{Count: 100, Min: ms, Mean: 1990 * time.Microsecond, P50: ms, P90: ms, P99: ms, P999: 100 * ms, Max: 100 * ms},
		},
		{
			"1 to 1000 ms",
			series(1000, ms),
			LatencySummary{Count: 1000, Min: ms, Mean: 500500 * time.Microsecond, P50: 500 * ms, P90: 900 * ms, P99: 990 * ms, P999: 999 * ms, Max: 1000 * ms},
		},
		{
			"clamped to range",
			[]time.Duration{0, 2 * time.Minute},
			LatencySummary{Count: 2, Min: time.Microsecond, Mean: 30 * time.Second, P50: time.Microsecond, P90: time.Minute, P99: time.Minute, P999: time.Minute, Max: time.Minute},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newLatencyHistogram()
			for _, v := range tc.values {
				recordLatency(h, v)
			}
			got := summarize(h)
			if got.Count != tc.want.Count {
				t.Fatalf("Count = %d, want %d", got.Count, tc.want.Count)
			}
			for _, f := range []struct {
				name      string
				got, want time.Duration
			}{
				{"Min", got.Min, tc.want.Min}, {"Mean", got.Mean, tc.want.Mean},
				{"P50", got.P50, tc.want.P50}, {"P90", got.P90, tc.want.P90},
				{"P99", got.P99, tc.want.P99}, {"P99.9", got.P999, tc.want.P999},
				{"Max", got.Max, tc.want.Max},
			} {
				// Three significant digits: within 0.1 %.
				if diff := f.got - f.want; diff < -f.want/1000 || diff > f.want/1000 {
					t.Errorf("%s = %v, want %v (±0.1%%)", f.name, f.got, f.want)
				}
			}
		})
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func series(n int, step time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * step
	}
	return out
}

func TestLatenciesMergeShards(t *testing.T) {
	t.Parallel()
	l := newLatencies(time.Second)
	for w := range 64 {
		l.record(w, 0, time.Duration(w+1)*time.Millisecond)
	}
	s := l.summary()
	if s.Count != 64 || s.Min != time.Millisecond || s.Max < 63*time.Millisecond {
		t.Fatalf("summary %+v", s)
	}
}

func TestStickiness(t *testing.T) {
	t.Parallel()
	type answer struct {
		status    int
		node      string
		setCookie string
	}
	for _, tc := range []struct {
		name                 string
		answers              []answer
		violations, ended    int64
		wantNode, wantCookie string
	}{
		{"first answer sets the session", []answer{{200, "A", "A"}}, 0, 0, "A", "A"},
		{"same node", []answer{{200, "A", "A"}, {200, "A", ""}, {101, "A", ""}}, 0, 0, "A", "A"},
		{"dotted cookie kept", []answer{{200, "A", "r.A"}, {200, "A", ""}}, 0, 0, "A", "r.A"},
		{"other node without 409", []answer{{200, "A", "A"}, {200, "B", ""}}, 1, 0, "B", "A"},
		{"failover", []answer{{200, "A", "A"}, {409, "B", "B"}, {200, "B", ""}, {200, "B", ""}}, 0, 1, "B", "B"},
		{"ended node seen again", []answer{{200, "A", "A"}, {409, "B", "B"}, {200, "B", ""}, {409, "A", "A"}}, 1, 2, "A", "A"},
		{"ping-pong", []answer{{200, "A", "A"}, {409, "B", "B"}, {409, "A", "A"}, {409, "B", "B"}, {409, "A", "A"}}, 3, 4, "A", "A"},
		{"409 without Set-Cookie adopts the node", []answer{{200, "A", "A"}, {409, "B", ""}}, 0, 1, "B", "B"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var s stickiness
			for _, a := range tc.answers {
				s.observe(a.status, a.node, a.setCookie)
			}
			if s.violated != tc.violations || s.endedN != tc.ended {
				t.Errorf("violations %d, ended %d; want %d, %d", s.violated, s.endedN, tc.violations, tc.ended)
			}
			if s.node != tc.wantNode || s.cookie != tc.wantCookie {
				t.Errorf("node %q cookie %q; want %q %q", s.node, s.cookie, tc.wantNode, tc.wantCookie)
			}
		})
	}
}

func TestLoadConfigValidate(t *testing.T) {
	t.Parallel()
	good := LoadConfig{Target: "http://127.0.0.1:8080"}
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*LoadConfig)
		flag string
	}{
		{"no target", func(c *LoadConfig) { c.Target = "" }, "--target"},
		{"not loopback", func(c *LoadConfig) { c.Target = "http://192.0.2.3:80" }, "--target"},
		{"ftp", func(c *LoadConfig) { c.Target = "ftp://127.0.0.1:8443" }, "--target"},
		{"tls-handshake over http", func(c *LoadConfig) { c.Scenario = ScenarioTLSHandshake }, "--target"},
		{"rate", func(c *LoadConfig) { c.Rate = -1 }, "--rate"},
		{"rate of idle", func(c *LoadConfig) { c.Scenario, c.Rate, c.PID = ScenarioIdle, 5, 1 }, "--rate"},
		{"snapshot-bytes", func(c *LoadConfig) { c.SnapshotBytes = 3 }, "--snapshot-bytes"},
		{"snapshot-every", func(c *LoadConfig) { c.SnapshotEvery = -1 }, "--snapshot-every"},
		{"big-mb", func(c *LoadConfig) { c.BigMB = MaxBigMB + 1 }, "--big-mb"},
		{"scenario", func(c *LoadConfig) { c.Scenario = "soak" }, "--scenario"},
		{"duration", func(c *LoadConfig) { c.Duration = -time.Second }, "--duration"},
		{"too long", func(c *LoadConfig) { c.Duration = 25 * time.Hour }, "--duration"},
		{"conns", func(c *LoadConfig) { c.Conns = -1 }, "--conns"},
		{"sessions", func(c *LoadConfig) { c.Sessions = MaxLoadSessions + 1 }, "--sessions"},
		{"bytes", func(c *LoadConfig) { c.ResourceBytes = -5 }, "--bytes"},
		{"msg-bytes", func(c *LoadConfig) { c.MessageBytes = 8 }, "--msg-bytes"},
		{"timeout", func(c *LoadConfig) { c.Timeout = -1 }, "--timeout"},
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
	if err := CheckLoopback("localhost:1"); err != nil {
		t.Error(err)
	}
	if err := CheckLoopback("[::1]:1"); err != nil {
		t.Error(err)
	}
	if err := CheckLoopback("0.0.0.0:1"); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("0.0.0.0: %v", err)
	}
}

func TestRunLoadDirect(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	rep, err := RunLoad(context.Background(), LoadConfig{
		Target: n.url, Scenario: ScenarioMixed, Duration: time.Second, Conns: 4, Sessions: 4,
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text.String())
	if rep.Failed() || rep.ErrorCount() != 0 || rep.StickyViolations != 0 || rep.SessionsEnded != 0 {
		t.Fatalf("errors %v, violations %d, ended %d", rep.Errors, rep.StickyViolations, rep.SessionsEnded)
	}
	if rep.Elapsed > 10*time.Second {
		t.Errorf("run took %v", rep.Elapsed)
	}
	if rep.HTTP == nil || rep.HTTP.Ops == 0 || rep.HTTP.Latency.Count != rep.HTTP.Ops || rep.HTTP.Bytes != 1024*rep.HTTP.Ops {
		t.Errorf("http %+v", rep.HTTP)
	}
	if rep.WS == nil || rep.WS.Ops == 0 || rep.WS.Latency.Count != rep.WS.Ops || rep.WS.Latency.Max <= 0 {
		t.Errorf("ws %+v", rep.WS)
	}
	if len(rep.Nodes) != 1 || rep.Nodes[0].Node != "CB_1" || rep.Nodes[0].WSSessions != 4 ||
		rep.Nodes[0].WSMessages != rep.WS.Ops || rep.Nodes[0].Requests < rep.HTTP.Ops {
		t.Errorf("nodes %+v", rep.Nodes)
	}
	if !strings.Contains(text.String(), "CB_1") || !strings.Contains(text.String(), "\nOK\n") {
		t.Error("text report lacks the node or the verdict")
	}
	// Every WebSocket was closed.
	waitFor(t, func() bool { return n.Stats().WSOpen == 0 })

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Scenario string `json:"scenario"`
		HTTP     struct {
			Ops       int64              `json:"ops"`
			LatencyUS map[string]float64 `json:"latency_us"`
		} `json:"http"`
		Nodes  []map[string]any `json:"nodes"`
		Failed bool             `json:"failed"`
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatalf("JSON %s: %v", js.String(), err)
	}
	if got.Scenario != "mixed" || got.HTTP.Ops != rep.HTTP.Ops || got.HTTP.LatencyUS["p99_9"] <= 0 ||
		len(got.Nodes) != 1 || got.Failed || strings.Count(js.String(), "\n") != 1 {
		t.Errorf("JSON report %s", js.String())
	}
}

// routingProxy is a reverse proxy in front of nodes that sends each request
// to nodes[pick(request)]. WebSocket upgrades go through too.
func routingProxy(t *testing.T, nodes []*testNode, pick func(*http.Request) int) *httptest.Server {
	t.Helper()
	var targets []*url.URL
	for _, n := range nodes {
		u, err := url.Parse(n.url)
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, u)
	}
	tr := &http.Transport{}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(targets[pick(pr.In)]) },
		Transport: tr,
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		tr.CloseIdleConnections()
	})
	return srv
}

// alternatingProxy is a reverse proxy that ignores stickiness: request i
// goes to node i mod len(nodes).
func alternatingProxy(t *testing.T, nodes ...*testNode) *httptest.Server {
	var next atomic.Uint64
	return routingProxy(t, nodes, func(*http.Request) int { return int((next.Add(1) - 1) % uint64(len(nodes))) })
}

// contraryProxy is a router that always misroutes a session: a request
// whose cookie names one of the nodes goes to another, a request without
// one to the first. Unlike alternatingProxy, the violation does not depend
// on how concurrent sessions' requests interleave.
func contraryProxy(t *testing.T, nodes ...*testNode) *httptest.Server {
	return routingProxy(t, nodes, func(r *http.Request) int {
		if c, err := r.Cookie(DefaultCookie); err == nil {
			for k, n := range nodes {
				if strings.HasSuffix(c.Value, n.name) {
					return (k + 1) % len(nodes)
				}
			}
		}
		return 0
	})
}

func TestRunLoadAlternatingProxyViolatesStickiness(t *testing.T) {
	t.Parallel()
	a := startNode(t, NodeConfig{Name: "CB_1"})
	b := startNode(t, NodeConfig{Name: "CB_2"})
	proxy := alternatingProxy(t, a, b)
	// One client at a time, so that the alternation is seen by one client:
	// several in lockstep may each land on one node by luck.
	for _, scenario := range []string{ScenarioHTTP, ScenarioWS} {
		t.Run(scenario, func(t *testing.T) {
			rep, err := RunLoad(context.Background(), LoadConfig{
				Target: proxy.URL, Scenario: scenario, Duration: 300 * time.Millisecond, Conns: 1, Sessions: 1,
			}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			if rep.StickyViolations == 0 || rep.SessionsEnded == 0 || !rep.Failed() {
				t.Fatalf("violations %d, ended %d, failed %v; want a failed run", rep.StickyViolations, rep.SessionsEnded, rep.Failed())
			}
			if len(rep.Nodes) != 2 {
				t.Errorf("nodes %+v, want both", rep.Nodes)
			}
		})
	}
}

func TestRunLoadDeadTarget(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	target := n.url
	n.stop(t)
	rep, err := RunLoad(context.Background(), LoadConfig{
		Target: target, Scenario: ScenarioMixed, Duration: 200 * time.Millisecond, Conns: 1, Sessions: 1,
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Failed() || rep.Errors["http_refused"] == 0 {
		t.Fatalf("errors %v, want http_refused", rep.Errors)
	}
	if rep.Elapsed > 5*time.Second {
		t.Errorf("run took %v", rep.Elapsed)
	}
}

func TestRunLoadCanceled(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	rep, err := RunLoad(ctx, LoadConfig{Target: n.url, Duration: time.Hour, Conns: 2, Sessions: 2}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Elapsed > 10*time.Second || rep.ErrorCount() != 0 {
		t.Fatalf("canceled run: %v, errors %v", rep.Elapsed, rep.Errors)
	}
}
