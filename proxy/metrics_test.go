package proxy

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/admin"
)

// adminGet sends one request to h as a local operator would (Host names
// the loopback listener) and returns the recorded answer.
func adminGet(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("GET", path, nil)
	r.Host = "127.0.0.1:9090"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// scrape fetches /metrics from h, checks it answers 200, and parses it with
// Prometheus' own text parser.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	w := adminGet(t, h, "/metrics")
	if w.Code != 200 {
		t.Fatalf("/metrics: %d %s", w.Code, w.Body.String())
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mf, err := p.TextToMetricFamilies(strings.NewReader(w.Body.String()))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, w.Body.String())
	}
	return mf
}

// series returns the label sets of family name's metrics for node, each as
// "generation=G" ("" for a live node's), with how often each occurs.
func series(mf map[string]*dto.MetricFamily, name, node string) map[string]int {
	out := map[string]int{}
	f := mf[name]
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		var n, gen string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "node":
				n = l.GetValue()
			case "generation":
				gen = "generation=" + l.GetValue()
			}
		}
		if n == node {
			out[gen]++
		}
	}
	return out
}

// nodesCfg is a Config naming the nodes given as NAME=URL pairs, without
// health checks (every node stays up).
func nodesCfg(pairs ...string) Config {
	var c Config
	for _, p := range pairs {
		name, u, _ := strings.Cut(p, "=")
		c.Pool.Nodes = append(c.Pool.Nodes, pool.NodeConfig{Name: name, URL: u})
	}
	return c
}

// TestMetricsAndStatusAfterReload: after every kind of reload (a node
// added, removed, its URL changed, re-added while its old copy drains,
// removed again) /metrics answers 200 and parses; a live node's series keep
// their labels (no generation), each copy being drained away has its own
// generation label; /status gives every copy its own id.
func TestMetricsAndStatusAfterReload(t *testing.T) {
	const a, b, c = "http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"
	s, err := New(nodesCfg("A="+a, "B="+b), zerolog.Nop(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	h := s.AdminHandler()
	steps := []struct {
		name  string
		nodes []string
		want  map[string]map[string]int // node → series of tether_node_state (3 states each)
		ids   []string
	}{
		{"add", []string{"A=" + a, "B=" + b, "C=" + c},
			map[string]map[string]int{"A": {"": 3}, "B": {"": 3}, "C": {"": 3}}, []string{"A", "B", "C@1"}},
		{"remove", []string{"A=" + a, "C=" + c},
			map[string]map[string]int{"A": {"": 3}, "B": {"generation=0": 3}, "C": {"": 3}}, []string{"A", "B", "C@1"}},
		{"URL change", []string{"A=http://127.0.0.1:4", "C=" + c},
			map[string]map[string]int{"A": {"": 3, "generation=0": 3}, "B": {"generation=0": 3}}, []string{"A", "A@3", "B", "C@1"}},
		{"re-add during drain", []string{"A=http://127.0.0.1:4", "B=" + b, "C=" + c},
			map[string]map[string]int{"B": {"": 3, "generation=0": 3}}, []string{"A", "A@3", "B", "B@4", "C@1"}},
		{"remove again during drain", []string{"A=http://127.0.0.1:4", "C=" + c},
			map[string]map[string]int{"B": {"generation=0": 3, "generation=4": 3}}, []string{"A", "A@3", "B", "B@4", "C@1"}},
	}
	for _, step := range steps {
		if err := s.Reload(nodesCfg(step.nodes...)); err != nil {
			t.Fatalf("%s: reload: %v", step.name, err)
		}
		mf := scrape(t, h)
		for node, want := range step.want {
			got := series(mf, "tether_node_state", node)
			if len(got) != len(want) {
				t.Errorf("%s: tether_node_state of %s: %v, want %v", step.name, node, got, want)
				continue
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s: tether_node_state of %s: %v, want %v", step.name, node, got, want)
				}
			}
		}
		var st admin.Status
		if err := json.Unmarshal(adminGet(t, h, "/status").Body.Bytes(), &st); err != nil {
			t.Fatalf("%s: /status: %v", step.name, err)
		}
		seen := map[string]bool{}
		for _, n := range st.Nodes {
			if seen[n.ID] {
				t.Errorf("%s: /status has id %q twice", step.name, n.ID)
			}
			seen[n.ID] = true
		}
		for _, id := range step.ids {
			if !seen[id] {
				t.Errorf("%s: /status has no id %q: %+v", step.name, id, st.Nodes)
			}
		}
		page := adminGet(t, h, "/status?format=html").Body.String()
		for id := range seen {
			if strings.Count(page, `<tr id="node-`+id+`"`) != 1 {
				t.Errorf("%s: the status page has not exactly one row node-%s", step.name, id)
			}
		}
	}
}

// TestStatusLastErrorAt: a node's last error comes with its time, so an
// error from before the node came up reads as old news.
func TestStatusLastErrorAt(t *testing.T) {
	cfg := oneNode(closedAddr(t))
	cfg.Pool.HealthInterval, cfg.Pool.HealthTimeout = 20*time.Millisecond, 200*time.Millisecond
	before := time.Now()
	s, err := New(cfg, zerolog.Nop(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	h := s.AdminHandler()
	var n admin.NodeStatus
	deadline := time.Now().Add(5 * time.Second)
	for n.LastError == "" && time.Now().Before(deadline) {
		var st admin.Status
		if err := json.Unmarshal(adminGet(t, h, "/status").Body.Bytes(), &st); err != nil {
			t.Fatal(err)
		}
		n = st.Nodes[0]
		if n.LastError == "" {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n.LastError == "" {
		t.Fatal("no last_error within 5s of probing a closed port")
	}
	if n.LastErrorAt.Before(before) || n.LastErrorAt.After(time.Now()) {
		t.Fatalf("last_error_at %v, want between %v and now", n.LastErrorAt, before)
	}
	if body := adminGet(t, h, "/status").Body.String(); !strings.Contains(body, `"last_error_at": "`) {
		t.Fatalf("/status JSON without last_error_at: %s", body)
	}
	if page := adminGet(t, h, "/status?format=html").Body.String(); !strings.Contains(page, " ago)</td>") {
		t.Fatalf("the status page does not say when the last error happened")
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
