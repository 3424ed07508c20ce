package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"image/png"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tether-lb/tether/tlsterm/tlstest"
)

// startTLSNode runs a node behind a TLS listener with a self-signed RSA-2048
// or ECDSA P-256 certificate and returns its https URL.
func startTLSNode(t *testing.T, name string, rsa bool) string {
	t.Helper()
	cert, key, err := tlstest.WritePair(t.TempDir(), tlstest.Leaf{RSA: rsa})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNode{Node: NewNode(NodeConfig{Name: name}, zerolog.Nop()), addr: ln.Addr().String(), served: make(chan error, 1),
		client: &http.Client{}}
	go tn.serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"http/1.1"}}))
	t.Cleanup(func() { tn.stop(t) })
	return "https://" + tn.addr
}

// checkClean fails t unless rep shows traffic of every operation in ops
// and no error, violation or ended session.
func checkClean(t *testing.T, rep *Report, ops ...string) {
	t.Helper()
	if rep.Failed() || rep.SessionsEnded != 0 {
		t.Fatalf("errors %v, violations %d, ended %d", rep.Errors, rep.StickyViolations, rep.SessionsEnded)
	}
	var got []string
	for _, op := range rep.ops() {
		got = append(got, op.name)
		if op.Ops == 0 || op.Latency.Count != op.Ops || op.Latency.Max <= 0 || len(op.Timeline) == 0 {
			t.Errorf("%s: %d ops, latency %+v, %d timeline points", op.name, op.Ops, op.Latency, len(op.Timeline))
		}
	}
	if strings.Join(got, " ") != strings.Join(ops, " ") {
		t.Errorf("operations %v, want %v", got, ops)
	}
}

func TestRunLoadScenariosDirect(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	for _, tc := range []struct {
		name string
		cfg  LoadConfig
		ops  []string
		// sent is how many messages an open loop sends (rate × sessions ×
		// duration); 0 for a closed loop.
		sent int64
	}{
		{"cobrowse closed, snapshots", LoadConfig{Scenario: ScenarioCobrowse, SnapshotEvery: 5, SnapshotBytes: 64 << 10}, []string{"ws", "snapshot"}, 0},
		{"cobrowse open", LoadConfig{Scenario: ScenarioCobrowse, Rate: 50}, []string{"ws"}, 50 * 3 * 4 / 10},
		{"ws-echo open", LoadConfig{Scenario: ScenarioWSEcho, Rate: 50, MessageBytes: 256}, []string{"ws"}, 50 * 3 * 4 / 10},
		{"longpoll closed", LoadConfig{Scenario: ScenarioLongPoll, SnapshotEvery: 3}, []string{"poll", "snapshot"}, 0},
		{"longpoll open", LoadConfig{Scenario: ScenarioLongPoll, Rate: 50, SnapshotEvery: 4}, []string{"poll", "snapshot"}, 50 * 3 * 4 / 10},
		{"big", LoadConfig{Scenario: ScenarioBig, Conns: 2, BigMB: 1}, []string{"upload", "download"}, 0},
		{"http open", LoadConfig{Scenario: ScenarioHTTP, Rate: 50, Conns: 3}, []string{"http"}, 50 * 3 * 4 / 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			cfg.Target, cfg.Duration, cfg.Sessions = n.url, 400*time.Millisecond, 3
			var progress lockedBuffer
			cfg.Progress = &progress
			rep, err := RunLoad(context.Background(), cfg, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			checkClean(t, rep, tc.ops...)
			var all int64
			for _, op := range rep.ops() {
				all += op.Ops
			}
			// Slots still unsent at the end (a session that opened late
			// and catches up) are not sent: at most rate × connections ×
			// duration, and most of them on a busy machine.
			if tc.sent > 0 && (all > tc.sent || all < tc.sent/2) {
				t.Errorf("open loop: %d operations, want %d (rate × connections × duration)", all, tc.sent)
			}
			if cfg.Scenario == ScenarioBig && (rep.Upload.Bytes != 1_000_000*rep.Upload.Ops || rep.Download.Ops == 0) {
				t.Errorf("big: upload %+v, download %+v", rep.Upload, rep.Download)
			}
			if rep.Rate != cfg.Rate {
				t.Errorf("rate %v", rep.Rate)
			}
		})
	}
}

func TestRunLoadProgress(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	var progress lockedBuffer
	rep, err := RunLoad(context.Background(), LoadConfig{
		Target: n.url, Scenario: ScenarioMixed, Duration: 1100 * time.Millisecond, Conns: 1, Sessions: 1, Progress: &progress,
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, rep, "http", "ws")
	if !strings.Contains(progress.String(), "load mixed 1s/1.1s: http ") || !strings.Contains(progress.String(), "errors 0\n") {
		t.Errorf("progress %q", progress.String())
	}
}

func TestRunLoadTLS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		rsa  bool
		key  string
	}{{"RSA", true, "RSA-2048"}, {"ECDSA", false, "ECDSA P-256"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			target := startTLSNode(t, "CB_1", tc.rsa)
			rep, err := RunLoad(context.Background(), LoadConfig{
				Target: target, Insecure: true, Scenario: ScenarioTLSHandshake, Duration: 300 * time.Millisecond, Conns: 2,
			}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			checkClean(t, rep, "handshake")
			if rep.TLS == nil || rep.TLS.KeyType != tc.key || rep.TLS.Group != "X25519" || rep.TLS.Resumed ||
				rep.Nodes[0].Requests != rep.Handshake.Ops {
				t.Errorf("tls %+v, nodes %+v", rep.TLS, rep.Nodes)
			}
			var js bytes.Buffer
			if err := rep.WriteJSON(&js); err != nil || !strings.Contains(js.String(), `"key":"`+tc.key+`"`) {
				t.Errorf("JSON %s: %v", js.String(), err)
			}
		})
	}
	target := startTLSNode(t, "CB_1", false)
	for _, tc := range []struct {
		scenario string
		ops      []string
	}{
		{ScenarioMixed, []string{"http", "ws"}},
		{ScenarioWSEcho, []string{"ws"}},
		{ScenarioLongPoll, []string{"poll"}},
		{ScenarioBig, []string{"upload", "download"}},
	} {
		t.Run("over TLS "+tc.scenario, func(t *testing.T) {
			t.Parallel()
			rep, err := RunLoad(context.Background(), LoadConfig{
				Target: target, Insecure: true, Scenario: tc.scenario, Duration: 300 * time.Millisecond, Conns: 2, Sessions: 2, BigMB: 1,
			}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			checkClean(t, rep, tc.ops...)
		})
	}
	t.Run("unverified", func(t *testing.T) {
		t.Parallel()
		rep, err := RunLoad(context.Background(), LoadConfig{
			Target: target, Scenario: ScenarioTLSHandshake, Duration: 200 * time.Millisecond, Conns: 1,
		}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if rep.Errors["handshake_tls_unverified"] == 0 {
			t.Errorf("errors %v, want handshake_tls_unverified", rep.Errors)
		}
	})
}

// TestRunLoadNewScenariosAlternatingProxy runs the scenarios through a
// router that ignores the cookie: each reports the violations. Which node a
// request lands on depends on how the session's requests interleave with
// the others' (a long poll's customer and agent may each stay on one node
// for a whole short run; an upload may fail first, when the other node
// answers 409 before reading the body), so a scenario gets up to five runs
// to show them; a router that keeps sessions sticky shows none in any.
func TestRunLoadNewScenariosAlternatingProxy(t *testing.T) {
	t.Parallel()
	a := startNode(t, NodeConfig{Name: "CB_1"})
	b := startNode(t, NodeConfig{Name: "CB_2"})
	proxy := alternatingProxy(t, a, b)
	for _, scenario := range []string{ScenarioLongPoll, ScenarioWSEcho, ScenarioBig} {
		t.Run(scenario, func(t *testing.T) {
			var last string
			for range 5 {
				rep, err := RunLoad(context.Background(), LoadConfig{
					Target: proxy.URL, Scenario: scenario, Duration: 300 * time.Millisecond, Conns: 1, Sessions: 1, BigMB: 1,
				}, zerolog.Nop())
				if err != nil {
					t.Fatal(err)
				}
				if rep.StickyViolations > 0 && rep.SessionsEnded > 0 && rep.Failed() {
					return
				}
				last = fmt.Sprintf("violations %d, ended %d, errors %v", rep.StickyViolations, rep.SessionsEnded, rep.Errors)
			}
			t.Fatalf("five runs showed no failed run with violations; the last: %s", last)
		})
	}
}

func TestWritePlot(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	rep, err := RunLoad(context.Background(), LoadConfig{
		Target: n.url, Scenario: ScenarioMixed, Duration: 300 * time.Millisecond, Conns: 1, Sessions: 1, Rate: 200,
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "lat.png")
	if err := rep.WritePlot(path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 500 {
		t.Errorf("image %v", b)
	}
	if err := (&Report{}).WritePlot(path); err != ErrNothingToPlot {
		t.Errorf("empty report: %v", err)
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Rate float64 `json:"rate"`
		HTTP struct {
			Timeline []map[string]float64 `json:"timeline"`
		} `json:"http"`
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil || got.Rate != 200 || len(got.HTTP.Timeline) == 0 ||
		got.HTTP.Timeline[0]["p99_us"] <= 0 {
		t.Errorf("JSON %s: %v", js.String(), err)
	}
}
