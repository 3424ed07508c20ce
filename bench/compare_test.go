package bench

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// compareTemplates is scripts/compare seen from this package's directory.
const compareTemplates = "../scripts/compare"

// needBinary returns the path of name, or fails the test: CI installs nginx
// and HAProxy (apt-get install -y nginx haproxy), so a missing one is a
// broken machine, not a reason to skip.
func needBinary(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found in PATH: the compare templates are checked with it; "+
			"install it with `apt-get update && apt-get install -y nginx haproxy`", name)
	}
	return path
}

// testPeerConfig is a configuration of two nodes and one worker in dir.
func testPeerConfig(dir string, nodes ...PeerNode) peerConfig {
	if nodes == nil {
		nodes = []PeerNode{{"CB_Server_1", "127.0.0.1:18701"}, {"CB_Server_2", "127.0.0.1:18702"}}
	}
	return newPeerConfig("127.0.0.1:18080", nodes, DefaultCookie, 1, dir)
}

func TestPeerTemplatesAccepted(t *testing.T) {
	t.Parallel()
	certs, err := writeCompareCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		peer, template, file string
		check                func(bin, dir, conf string) []string
		want                 []string // lines the configuration holds
		wantTLS              []string // and those it holds with a TLS listener
	}{
		{
			PeerNginx, nginxTemplate, "nginx.conf",
			func(bin, dir, conf string) []string {
				return []string{bin, "-t", "-q", "-p", dir + "/", "-c", conf, "-e", filepath.Join(dir, "error.log")}
			},
			[]string{
				"worker_processes 1;",
				`CB_Server_1 node_CB_Server_1;`,
				`~\.CB_Server_1$ node_CB_Server_1;`,
				`~\.CB_Server_2$ node_CB_Server_2;`,
				"proxy_http_version 1.1;",
				"proxy_set_header Connection $connection_upgrade;",
				"keepalive 128;",
				"access_log off;",
			},
			[]string{"listen 127.0.0.1:18443 ssl;", "ssl_certificate /", "ssl_certificate_key /", "ssl_protocols TLSv1.2 TLSv1.3;"},
		},
		{
			PeerHAProxy, haproxyTemplate, "haproxy.cfg",
			func(bin, dir, conf string) []string { return []string{bin, "-c", "-q", "-f", conf} },
			[]string{
				"nbthread 1",
				"use-server CB_Server_1 if { req.cook(gcbSessionServer) -m str CB_Server_1 } || { req.cook(gcbSessionServer) -m end .CB_Server_1 }",
				"option httpchk GET /cobrowse/health",
				"option http-keep-alive",
				"http-reuse always",
				"server CB_Server_2 127.0.0.1:18702",
			},
			[]string{"bind 127.0.0.1:18443 ssl crt /", "alpn http/1.1 ssl-min-ver TLSv1.2", "X-Forwarded-Proto https if { ssl_fc }"},
		},
	} {
		for _, withTLS := range []string{"", CompareTLSRSA, CompareTLSECDSA} {
			cert := certs[withTLS]
			t.Run(strings.TrimSpace(tc.peer+" "+withTLS), func(t *testing.T) {
				t.Parallel()
				bin := needBinary(t, tc.peer)
				dir := t.TempDir()
				pc := testPeerConfig(dir)
				want := tc.want
				if cert != nil {
					pc.TLS = &peerTLS{Listen: "127.0.0.1:18443", certPair: *cert}
					want = append(slices.Clone(want), tc.wantTLS...)
				}
				conf, err := renderPeerConfig(compareTemplates, tc.template, pc)
				if err != nil {
					t.Fatal(err)
				}
				for _, line := range want {
					if !bytes.Contains(conf, []byte(line)) {
						t.Errorf("configuration lacks %q:\n%s", line, conf)
					}
				}
				if cert == nil && bytes.Contains(conf, []byte("ssl")) && tc.peer == PeerNginx {
					t.Errorf("TLS without a certificate:\n%s", conf)
				}
				path := filepath.Join(dir, tc.file)
				if err := os.WriteFile(path, conf, 0o644); err != nil {
					t.Fatal(err)
				}
				argv := tc.check(bin, dir, path)
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
					t.Fatalf("%s: %v\n%s\n%s", strings.Join(argv, " "), err, out, conf)
				}
			})
		}
	}
}

func TestPeerConfigRefusesUnsafeValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		c    peerConfig
	}{
		{"no nodes", newPeerConfig("127.0.0.1:1", nil, DefaultCookie, 1, "/tmp")},
		{"name with a space", testPeerConfig("/tmp", PeerNode{"a b", "127.0.0.1:1"})},
		{"name with a brace", testPeerConfig("/tmp", PeerNode{"a}", "127.0.0.1:1"})},
		{"node off loopback", testPeerConfig("/tmp", PeerNode{"a", "192.0.2.1:80"})},
		{"cookie with a semicolon", newPeerConfig("127.0.0.1:1", []PeerNode{{"a", "127.0.0.1:1"}}, "c;", 1, "/tmp")},
		{"no worker", newPeerConfig("127.0.0.1:1", []PeerNode{{"a", "127.0.0.1:1"}}, DefaultCookie, 0, "/tmp")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := renderPeerConfig(compareTemplates, nginxTemplate, tc.c); err == nil {
				t.Error("rendered")
			}
		})
	}
}

// TestPeersRouteByCookie runs nginx and HAProxy from the templates in front
// of two nodes and checks that both cookie forms reach the named node.
func TestPeersRouteByCookie(t *testing.T) {
	t.Parallel()
	n1 := startNode(t, NodeConfig{Name: "CB_Server_1"})
	n2 := startNode(t, NodeConfig{Name: "CB_Server_2"})
	e := &peerEnv{
		templates: compareTemplates,
		nodes:     []PeerNode{{"CB_Server_1", n1.addr}, {"CB_Server_2", n2.addr}},
		cookie:    DefaultCookie,
	}
	e.nginxBin, e.haproxyBin = needBinary(t, "nginx"), needBinary(t, "haproxy")
	for _, peer := range []string{PeerNginx, PeerHAProxy} {
		t.Run(peer, func(t *testing.T) {
			t.Parallel()
			pr, err := startPeer(t.Context(), e, peer, 1, t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer pr.stop()
			client := &http.Client{Timeout: 5 * time.Second}
			defer client.CloseIdleConnections()
			for _, tc := range []struct{ cookie, want string }{
				{"CB_Server_2", "CB_Server_2"},
				{"abc.CB_Server_2", "CB_Server_2"},
				{"CB_Server_1", "CB_Server_1"},
				{"x.y.CB_Server_1", "CB_Server_1"},
				{"CB_Server_3", ""}, // balanced
			} {
				// Four times each: balancing would miss the named node at least once.
				for range 4 {
					req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+pr.addr+"/", nil)
					req.Header.Set("Cookie", "other=1; "+DefaultCookie+"="+tc.cookie)
					resp, err := client.Do(req)
					if err != nil {
						t.Fatalf("cookie %s: %v", tc.cookie, err)
					}
					_ = resp.Body.Close()
					got := resp.Header.Get(HeaderNode)
					switch {
					case tc.want != "" && (resp.StatusCode != http.StatusOK || got != tc.want):
						t.Errorf("cookie %s: %d from %q, want 200 from %s", tc.cookie, resp.StatusCode, got, tc.want)
					case tc.want == "" && got == "":
						t.Errorf("cookie %s: %d without X-Node", tc.cookie, resp.StatusCode)
					}
				}
			}
			// A WebSocket upgrade goes through, with the cookie.
			rep, err := RunLoad(t.Context(), LoadConfig{
				Target: "http://" + pr.addr, Scenario: ScenarioWSEcho, Duration: 200 * time.Millisecond, Sessions: 2, MessageBytes: 256,
			}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			if rep.Failed() || rep.WS.Ops == 0 {
				t.Errorf("echo through %s: %d round trips, errors %v, violations %d", peer, rep.WS.Ops, rep.Errors, rep.StickyViolations)
			}
		})
	}
}

// TestPeersTerminateTLS runs nginx and HAProxy from the templates with a
// TLS listener and checks the load through it: wss echo and handshakes
// with the certificate given.
func TestPeersTerminateTLS(t *testing.T) {
	t.Parallel()
	n1 := startNode(t, NodeConfig{Name: "CB_Server_1"})
	n2 := startNode(t, NodeConfig{Name: "CB_Server_2"})
	certs, err := writeCompareCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &peerEnv{
		templates: compareTemplates,
		nodes:     []PeerNode{{"CB_Server_1", n1.addr}, {"CB_Server_2", n2.addr}},
		cookie:    DefaultCookie,
		perfErr:   errors.New("not counted in this test"),
	}
	e.nginxBin, e.haproxyBin = needBinary(t, "nginx"), needBinary(t, "haproxy")
	cfg := CompareConfig{Duration: 200 * time.Millisecond, Sessions: 2, TLSConns: 2}.withDefaults()
	for _, peer := range []string{PeerNginx, PeerHAProxy} {
		t.Run(peer, func(t *testing.T) {
			t.Parallel()
			pr, err := startPeer(t.Context(), e, peer, 1, t.TempDir(), certs[CompareTLSRSA])
			if err != nil {
				t.Fatal(err)
			}
			defer pr.stop()
			for _, scenario := range []string{CompareWSS, CompareTLSRSA} {
				s, err := runSlot(t.Context(), cfg, e, slot{round: 1, peer: peer, scenario: scenario, gen: GeneratorGo}, pr, zerolog.Nop())
				if err != nil {
					t.Fatal(err)
				}
				if s.Errors != 0 || s.PerSecond == 0 || !strings.HasPrefix(s.TLS, "RSA-2048, TLS 1.3") {
					t.Errorf("%s through %s: %+v", scenario, peer, s)
				}
			}
		})
	}
}

func TestRunEchoDirect(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	rep, err := RunLoad(t.Context(), LoadConfig{
		Target: n.url, Scenario: ScenarioWSEcho, Duration: 300 * time.Millisecond, Sessions: 3, MessageBytes: 256,
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() || rep.SessionsEnded != 0 {
		t.Fatalf("errors %v, violations %d, ended %d", rep.Errors, rep.StickyViolations, rep.SessionsEnded)
	}
	if rep.Scenario != ScenarioWSEcho || rep.HTTP != nil || rep.WS == nil || rep.WS.Ops == 0 ||
		rep.WS.Latency.Count != rep.WS.Ops || rep.WS.Bytes != 256*rep.WS.Ops {
		t.Fatalf("report %+v, ws %+v", rep, rep.WS)
	}
	if len(rep.Nodes) != 1 || rep.Nodes[0].WSSessions != 3 || rep.Nodes[0].WSMessages != rep.WS.Ops {
		t.Errorf("nodes %+v", rep.Nodes)
	}
	waitFor(t, func() bool { return n.Stats().WSOpen == 0 })
}

func TestMedian(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		xs   []float64
		want float64
	}{
		{"none", nil, 0},
		{"one", []float64{7}, 7},
		{"odd, unsorted", []float64{30, 10, 20}, 20},
		{"even: mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
		{"outlier ignored", []float64{100, 101, 99, 5, 1e9}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := slices.Clone(tc.xs)
			if got := median(tc.xs); got != tc.want {
				t.Errorf("median(%v) = %v, want %v", tc.xs, got, tc.want)
			}
			if !slices.Equal(in, tc.xs) {
				t.Errorf("median sorted its input: %v", tc.xs)
			}
		})
	}
}

func TestRowsRatios(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	s := func(ps float64, p50, p99 time.Duration, kib float64) Sample {
		return Sample{PerSecond: ps, P50: p50, P99: p99, KiBPerSession: kib}
	}
	c := &Comparison{
		Peers:     []string{PeerTether, PeerNginx, PeerHAProxy, PeerDirect},
		Scenarios: []string{CompareHTTP},
		Samples: map[sampleKey][]Sample{
			// medians: 50,000/s, 1 ms, 4 ms, 9 KiB
			{CompareHTTP, PeerTether, GeneratorGo}: {s(50_000, ms, 4*ms, 9), s(10, 9*ms, 90*ms, 90), s(60_000, ms/2, 2*ms, 1)},
			// medians: 36,000/s, 2 ms, 5 ms, 22 KiB
			{CompareHTTP, PeerNginx, GeneratorGo}: {s(36_000, 2*ms, 5*ms, 22), s(36_000, 2*ms, 5*ms, 22), s(1, 2*ms, 5*ms, 22)},
			// medians: 40,000/s, 2.5 ms (even count), 8 ms, 4.5 KiB
			{CompareHTTP, PeerHAProxy, GeneratorGo}: {s(40_000, 2*ms, 8*ms, 4), s(40_000, 3*ms, 8*ms, 5)},
			// direct is never the best, even when it is.
			{CompareHTTP, PeerDirect, GeneratorGo}: {s(80_000, ms/4, ms, 1)},
		},
	}
	rows := c.Rows()
	if len(rows) != 4 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, tc := range []struct {
		peer                 string
		ps                   float64
		p50, p99             time.Duration
		xps, xp50, xp99, xkb float64
	}{
		{PeerTether, 50_000, ms, 4 * ms, 1.25, 0.5, 0.8, 2},
		{PeerNginx, 36_000, 2 * ms, 5 * ms, 0.9, 1, 1, 22 / 4.5},
		{PeerHAProxy, 40_000, 2500 * time.Microsecond, 8 * ms, 1, 1.25, 1.6, 1},
		{PeerDirect, 80_000, ms / 4, ms, 2, 0.125, 0.2, 1 / 4.5},
	} {
		i := slices.IndexFunc(rows, func(r Row) bool { return r.Peer == tc.peer })
		r := rows[i]
		near := func(got, want float64) bool { return got > want-1e-9 && got < want+1e-9 }
		if r.PerSecond != tc.ps || r.P50 != tc.p50 || r.P99 != tc.p99 {
			t.Errorf("%s medians: %v/s %v %v, want %v/s %v %v", tc.peer, r.PerSecond, r.P50, r.P99, tc.ps, tc.p50, tc.p99)
		}
		if !near(r.XPerSecond, tc.xps) || !near(r.XP50, tc.xp50) || !near(r.XP99, tc.xp99) || !near(r.XKiBPerSession, tc.xkb) {
			t.Errorf("%s ratios: %v %v %v %v, want %v %v %v %v", tc.peer,
				r.XPerSecond, r.XP50, r.XP99, r.XKiBPerSession, tc.xps, tc.xp50, tc.xp99, tc.xkb)
		}
	}
	var b bytes.Buffer
	if err := c.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| http | go | tether | 50,000 req/s | 1.25× | 1ms | 0.50× | 4ms | 0.80× |",
		"| http | go | haproxy | 40,000 req/s | 1.00× | 2.5ms | 1.25× | 8ms | 1.60× |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestRatiosWithoutPeers(t *testing.T) {
	t.Parallel()
	rows := withRatios([]Row{{Peer: PeerTether, Runs: 1, PerSecond: 5}, {Peer: PeerDirect, Runs: 1, PerSecond: 9}})
	for _, r := range rows {
		if r.XPerSecond != 0 || fmtRatio(r.XPerSecond) != "-" {
			t.Errorf("%s: ratio %v without nginx or HAProxy", r.Peer, r.XPerSecond)
		}
	}
}

func TestCompareOrder(t *testing.T) {
	t.Parallel()
	got := compareOrder([]string{"A", "B", "C", "D"}, []string{"http", "ws-echo"}, 2)
	var peers, scenarios []string
	for _, s := range got {
		peers = append(peers, s.peer)
		scenarios = append(scenarios, s.scenario)
	}
	if want := strings.Fields("A A B B C C D D A A B B C C D D"); !slices.Equal(peers, want) {
		t.Errorf("peers %v, want %v", peers, want)
	}
	if want := strings.Fields("http ws-echo http ws-echo http ws-echo http ws-echo http ws-echo http ws-echo http ws-echo http ws-echo"); !slices.Equal(scenarios, want) {
		t.Errorf("scenarios %v", scenarios)
	}
	if got[0].round != 1 || got[7].round != 1 || got[8].round != 2 || got[15].round != 2 {
		t.Errorf("rounds %+v", got)
	}
	// The node has no TLS: direct skips the TLS scenarios.
	var tlsOrder []string
	for _, s := range compareOrder([]string{"tether", PeerDirect}, []string{"http", CompareTLSRSA}, 1) {
		tlsOrder = append(tlsOrder, s.peer+"/"+s.scenario)
	}
	if want := []string{"tether/http", "tether/tls-rsa", "direct/http"}; !slices.Equal(tlsOrder, want) {
		t.Errorf("order %v, want %v", tlsOrder, want)
	}
	cfg := CompareConfig{Duration: 4 * time.Second, IdleHold: 5 * time.Second}
	est := cfg.estimate([]slot{{scenario: CompareHTTP}, {scenario: CompareTLSECDSA}, {scenario: CompareIdle}})
	if want := 3*peerStartCost + 2*4*time.Second + 5*time.Second + idleOpenCost; est != want {
		t.Errorf("estimate %v, want %v", est, want)
	}
	// idle-wss is an idle run over the peer's TLS listener; direct skips it.
	for _, s := range compareOrder([]string{PeerDirect}, []string{CompareIdle, CompareIdleWSS}, 1) {
		if s.scenario == CompareIdleWSS {
			t.Errorf("direct runs %s", s.scenario)
		}
	}
	lc := CompareConfig{IdleSessions: 100, IdleHold: time.Second}.loadConfig("127.0.0.1:1", CompareIdleWSS)
	if lc.Scenario != ScenarioIdle || lc.Target != "https://127.0.0.1:1" || !lc.Insecure || lc.Sessions != 100 {
		t.Errorf("idle-wss load %+v, want idle over https with 100 sessions", lc)
	}
	// idle-http holds IdleConns plain connections; tether alone gets its
	// profiler on a port of its own, unless --tether-flags name one.
	lc = CompareConfig{IdleSessions: 100, IdleConns: 300, IdleHold: time.Second}.loadConfig("127.0.0.1:1", CompareIdleHTTP)
	if lc.Scenario != ScenarioIdleHTTP || lc.Target != "http://127.0.0.1:1" || lc.Sessions != 300 || lc.Hold != time.Second {
		t.Errorf("idle-http load %+v, want idle-http over http with 300 connections", lc)
	}
	e := &peerEnv{tetherArgs: []string{"--log-level", "debug"}}
	for _, tc := range []struct {
		s     slot
		pprof bool
	}{
		{slot{peer: PeerTether, scenario: CompareIdleHTTP}, true},
		{slot{peer: PeerTetherConnGo, scenario: CompareIdleHTTP}, true},
		{slot{peer: PeerNginx, scenario: CompareIdleHTTP}, false},
		{slot{peer: PeerTether, scenario: CompareIdle}, false},
	} {
		pe, url, err := e.withPprof(tc.s)
		if err != nil {
			t.Fatal(err)
		}
		n := len(pe.tetherArgs)
		if got := url != "" && n == 5 && pe.tetherArgs[2] == "--admin" && "http://"+pe.tetherArgs[3] == url && pe.tetherArgs[4] == "--pprof"; got != tc.pprof {
			t.Errorf("%s/%s: args %q, url %q", tc.s.peer, tc.s.scenario, pe.tetherArgs, url)
		}
	}
	if len(e.tetherArgs) != 2 {
		t.Errorf("withPprof changed the environment's arguments: %q", e.tetherArgs)
	}
	own := &peerEnv{tetherArgs: []string{"--admin", "127.0.0.1:9191", "--pprof"}}
	if pe, url, _ := own.withPprof(slot{peer: PeerTether, scenario: CompareIdleHTTP}); url != "" || pe != own {
		t.Errorf("with an admin of its own: url %q", url)
	}
	// One scenario: exactly A B C D A B C D.
	var one []string
	for _, s := range compareOrder([]string{"A", "B", "C", "D"}, []string{"http"}, 2) {
		one = append(one, s.peer)
	}
	if want := strings.Fields("A B C D A B C D"); !slices.Equal(one, want) {
		t.Errorf("order %v, want %v", one, want)
	}
}

func TestPinning(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		list string
		want []int
		bad  bool
	}{
		{"0", []int{0}, false},
		{"0-1", []int{0, 1}, false},
		{"0-2,5,7-8", []int{0, 1, 2, 5, 7, 8}, false},
		{"x", nil, true},
		{"3-1", nil, true},
	} {
		got, err := parseCPUList(tc.list)
		if (err != nil) != tc.bad || !slices.Equal(got, tc.want) {
			t.Errorf("parseCPUList(%q) = %v, %v", tc.list, got, err)
		}
	}
	if p, err := planPins(PinNone, []int{0, 1}); err != nil || p.workers != 2 || p.proxyCPUs != "" {
		t.Errorf("none: %+v, %v", p, err)
	}
	if _, err := planPins(PinSplit, []int{0}); err == nil {
		t.Error("split on one CPU accepted")
	}
	if _, err := exec.LookPath("taskset"); err == nil {
		if p, err := planPins(PinSplit, []int{2, 3}); err != nil || p.workers != 1 || p.loadCPUs != "2" || p.proxyCPUs != "3" {
			t.Errorf("split: %+v, %v", p, err)
		}
	}
	if _, err := planPins("both", []int{0, 1}); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestCompareConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		c    CompareConfig
		flag string // "" when valid
	}{
		{"defaults", CompareConfig{}, ""},
		{"unknown peer", CompareConfig{Peers: []string{"envoy"}}, "--peers"},
		{"peer twice", CompareConfig{Peers: []string{"nginx", "nginx"}}, "--peers"},
		{"both tether engines", CompareConfig{Peers: []string{PeerTether, PeerTetherGo, PeerHAProxy}}, ""},
		{"unknown scenario", CompareConfig{Scenarios: []string{"ws"}}, "--scenarios"},
		{"TLS scenarios", CompareConfig{Scenarios: []string{CompareTLSECDSA, CompareWSS, CompareTLSRSA}}, ""},
		{"rounds", CompareConfig{Rounds: -1}, "--rounds"},
		{"message too small", CompareConfig{MessageBytes: 8}, "--msg-bytes"},
		{"idle sessions", CompareConfig{IdleSessions: 50_000}, "--idle-sessions"},
		{"idle conns", CompareConfig{IdleConns: peerFileLimit}, "--idle-conns"},
		{"idle-http", CompareConfig{Scenarios: []string{CompareIdleHTTP}, IdleConns: 8000}, ""},
		{"pin", CompareConfig{Pin: "cpu1"}, "--pin"},
		{"generator wrk", CompareConfig{Generator: GeneratorWrk}, ""},
		{"generator both", CompareConfig{Generator: GeneratorBoth}, ""},
		{"unknown generator", CompareConfig{Generator: "ab"}, "--generator"},
		{"wsgen sessions", CompareConfig{Generator: GeneratorWrk, Sessions: wsgenMaxSessions + 1}, "--sessions"},
		{"wsgen message", CompareConfig{Generator: GeneratorBoth, MessageBytes: wsgenMaxMessageBytes + 1}, "--msg-bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.c.Validate()
			switch {
			case tc.flag == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.flag != "" && (err == nil || !strings.Contains(err.Error(), tc.flag)):
				t.Errorf("error %v, want one naming %s", err, tc.flag)
			}
		})
	}
}

// TestTetherEnv: tether runs as it ships when it has every CPU, with a
// fixed count of processors otherwise.
func TestTetherEnv(t *testing.T) {
	for _, tc := range []struct {
		workers, cpus int
		want          string
	}{{2, 2, ""}, {1, 2, "GOMAXPROCS=1"}, {1, 1, ""}, {4, 8, "GOMAXPROCS=4"}} {
		if got := strings.Join(tetherEnv(tc.workers, tc.cpus), " "); got != tc.want {
			t.Errorf("tetherEnv(%d, %d) = %q, want %q", tc.workers, tc.cpus, got, tc.want)
		}
	}
}
