package bench

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestWithGenerators(t *testing.T) {
	t.Parallel()
	order := compareOrder([]string{PeerTether, PeerNginx}, []string{CompareHTTP, CompareWS, CompareTLSRSA, CompareIdle}, 1)
	for _, tc := range []struct {
		gen  string
		want []string // peer/scenario/generator
	}{
		{GeneratorGo, strings.Fields("tether/http/go tether/ws-echo/go tether/tls-rsa/go tether/idle/go " +
			"nginx/http/go nginx/ws-echo/go nginx/tls-rsa/go nginx/idle/go")},
		// The scenarios no outside generator drives keep the harness's own.
		{GeneratorWrk, strings.Fields("tether/http/wrk tether/ws-echo/wrk tether/tls-rsa/go tether/idle/go " +
			"nginx/http/wrk nginx/ws-echo/wrk nginx/tls-rsa/go nginx/idle/go")},
		{GeneratorBoth, strings.Fields("tether/http/go tether/http/wrk tether/ws-echo/go tether/ws-echo/wrk tether/tls-rsa/go tether/idle/go " +
			"nginx/http/go nginx/http/wrk nginx/ws-echo/go nginx/ws-echo/wrk nginx/tls-rsa/go nginx/idle/go")},
	} {
		var got []string
		for _, s := range withGenerators(order, tc.gen) {
			got = append(got, s.peer+"/"+s.scenario+"/"+s.gen)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v\nwant %v", tc.gen, got, tc.want)
		}
	}
}

func TestCookiesFor(t *testing.T) {
	t.Parallel()
	e := &peerEnv{cookie: DefaultCookie, nodes: []PeerNode{{"CB_Server_1", "127.0.0.1:1"}, {"CB_Server_2", "127.0.0.1:2"}}}
	if got, want := e.cookiesFor(PeerHAProxy), []string{"gcbSessionServer=CB_Server_1", "gcbSessionServer=CB_Server_2"}; !slices.Equal(got, want) {
		t.Errorf("haproxy: %q, want %q", got, want)
	}
	// direct is the first node alone: the other's cookie would be a 409.
	if got, want := e.cookiesFor(PeerDirect), []string{"gcbSessionServer=CB_Server_1"}; !slices.Equal(got, want) {
		t.Errorf("direct: %q, want %q", got, want)
	}
}

// withSys is s with the kernel's share of its CPU time set.
func withSys(s Sample, share float64) Sample {
	s.SysShare = share
	return s
}

// TestParseCPUTicks reads utime and stime past a command name that holds
// spaces and parentheses, and refuses a truncated line.
func TestParseCPUTicks(t *testing.T) {
	t.Parallel()
	stat := []byte("4242 (a b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 731 262 0 0 20 0 3 0 100 1000 10 18446744073709551615\n")
	if u, s, ok := parseCPUTicks(stat); !ok || u != 731 || s != 262 {
		t.Errorf("parseCPUTicks = %d, %d, %v; want 731, 262, true", u, s, ok)
	}
	for _, bad := range []string{"4242 (tether) S 1 2 3", "no parenthesis", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 u s 0"} {
		if _, _, ok := parseCPUTicks([]byte(bad)); ok {
			t.Errorf("parseCPUTicks(%q) ok", bad)
		}
	}
}

// TestRowsByGenerator checks that each generator's rows are ratioed among
// themselves, and that the table names the generator and gives CPU and
// system calls per op (n/a when a round was not counted).
func TestRowsByGenerator(t *testing.T) {
	t.Parallel()
	us := time.Microsecond
	s := func(ps float64, cpu time.Duration, sys float64) Sample {
		return Sample{PerSecond: ps, P50: time.Millisecond, P99: 2 * time.Millisecond, CPUPerOp: cpu, SyscallsPerOp: sys}
	}
	c := &Comparison{
		Config:    CompareConfig{Generator: GeneratorBoth}.withDefaults(),
		Peers:     []string{PeerTether, PeerNginx},
		Scenarios: []string{CompareHTTP, CompareTLSRSA},
		Samples: map[sampleKey][]Sample{
			{CompareHTTP, PeerTether, GeneratorGo}:   {s(10_000, 30*us, 5), s(12_000, 40*us, 6), s(11_000, 35*us, 7)},
			{CompareHTTP, PeerNginx, GeneratorGo}:    {s(20_000, 20*us, 4)},
			{CompareHTTP, PeerTether, GeneratorWrk}:  {withSys(s(30_000, 25*us, 5), 0.6), withSys(s(30_000, 25*us, 0), 0.8)},
			{CompareHTTP, PeerNginx, GeneratorWrk}:   {s(15_000, 22*us, 4)},
			{CompareTLSRSA, PeerTether, GeneratorGo}: {s(900, 1000*us, 30)},
			{CompareTLSRSA, PeerNginx, GeneratorGo}:  {s(1000, 900*us, 25)},
		},
	}
	rows := c.Rows()
	var got []string
	for _, r := range rows {
		got = append(got, r.Scenario+"/"+r.Generator+"/"+r.Peer)
	}
	if want := strings.Fields("http/go/tether http/go/nginx http/wrk/tether http/wrk/nginx tls-rsa/go/tether tls-rsa/go/nginx"); !slices.Equal(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	if r := rows[0]; r.XPerSecond != 0.55 || r.CPUPerOp != 35*us || r.SyscallsPerOp != 6 {
		t.Errorf("http go tether: %+v", r)
	}
	if r := rows[2]; r.XPerSecond != 2 || r.SyscallsPerOp != 0 || math.Abs(r.SysShare-0.7) > 1e-9 {
		t.Errorf("http wrk tether (one round not counted): %+v", r)
	}
	var b bytes.Buffer
	if err := c.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| scenario | generator | peer | throughput |",
		"| http | go | tether | 11,000 req/s | 0.55× | 1ms | 1.00× | 2ms | 1.00× | 0.00 | 35.0µs | 6.00 | 0 |",
		"| http | wrk | tether | 30,000 req/s | 2.00× | 1ms | 1.00× | 2ms | 1.00× | 0.00 | 25.0µs (70% sys) | n/a | 0 |",
		"| tls-rsa | tether | 900 | 0.90× | 1ms | 1.00× | 2ms | 1.00× | 0.00 | 1000.0µs | 30.00 | 0 |",
		"wrk: http by",
		"syscalls/op: system calls the peer's processes entered",
		"in parentheses the kernel's share of it",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	c.SyscallsNote = "perf not found"
	b.Reset()
	if err := c.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "syscalls/op: n/a (perf not found)") {
		t.Errorf("no n/a note:\n%s", b.String())
	}
}

// TestRunSlotOutside runs http with wrk and ws-echo with wsgen through
// HAProxy in front of two nodes, as compare does: figures, no errors, both
// nodes reached, and the peer's CPU per op (and its system calls, where
// perf can count them).
func TestRunSlotOutside(t *testing.T) {
	t.Parallel()
	wrk := needWrk(t)
	wsgen := buildWSGen(t)
	n1 := startNode(t, NodeConfig{Name: "CB_Server_1"})
	n2 := startNode(t, NodeConfig{Name: "CB_Server_2"})
	e := &peerEnv{
		templates: compareTemplates,
		nodes:     []PeerNode{{"CB_Server_1", n1.addr}, {"CB_Server_2", n2.addr}},
		cookie:    DefaultCookie,
		wrkBin:    wrk,
		wsgenBin:  wsgen,
		perfErr:   checkSyscallCounting(),
	}
	e.haproxyBin = needBinary(t, "haproxy")
	var err error
	if e.wrkScript, err = writeWrkScript(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	pr, err := startPeer(t.Context(), e, PeerHAProxy, 1, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pr.stop()
	cfg := CompareConfig{Duration: time.Second, Conns: 4, Sessions: 4}.withDefaults()
	for _, scenario := range []string{CompareHTTP, CompareWS} {
		s, err := runSlot(t.Context(), cfg, e, slot{round: 1, peer: PeerHAProxy, scenario: scenario, gen: GeneratorWrk}, pr, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if s.Errors != 0 || s.Ops == 0 || s.PerSecond <= 0 || s.P50 <= 0 || s.CPUPerOp <= 0 {
			t.Errorf("%s: %+v", scenario, s)
		}
		if e.perfErr == nil && s.SyscallsPerOp <= 0 {
			t.Errorf("%s: no system calls counted: %+v", scenario, s)
		}
	}
	// Each wrk thread and each wsgen session in turn carries one node's
	// cookie: both nodes served.
	if r1, r2 := n1.Stats(), n2.Stats(); r1.WSTotal == 0 || r2.WSTotal == 0 || r1.Requests <= r1.WSTotal || r2.Requests <= r2.WSTotal {
		t.Errorf("nodes: %+v, %+v", r1, r2)
	}
}

// TestOutsideToolsMissing runs with an empty PATH: without cc the wsgen
// runs are dropped with a note; without wrk the comparison stops with the
// package to install. Not parallel: it sets PATH.
func TestOutsideToolsMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	order := withGenerators(compareOrder([]string{PeerTether}, []string{CompareWS, CompareTLSRSA}, 1), GeneratorBoth)
	e := &peerEnv{}
	got, notes, err := e.outsideTools(t.Context(), order, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var runs []string
	for _, s := range got {
		runs = append(runs, s.scenario+"/"+s.gen)
	}
	if want := []string{"ws-echo/go", "tls-rsa/go"}; !slices.Equal(runs, want) {
		t.Errorf("runs %v, want %v", runs, want)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "no C compiler") {
		t.Errorf("notes %q", notes)
	}
	order = withGenerators(compareOrder([]string{PeerTether}, []string{CompareHTTP}, 1), GeneratorWrk)
	if _, _, err := e.outsideTools(t.Context(), order, t.TempDir()); err == nil || !strings.Contains(err.Error(), "apt-get install -y wrk") {
		t.Errorf("without wrk: %v", err)
	}
}

func TestFmtSyscalls(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		x    float64
		want string
	}{
		{5.234, "5.23"},
		{0, "n/a"},
	} {
		if got := fmtSyscalls(tc.x); got != tc.want {
			t.Errorf("fmtSyscalls(%v) = %q, want %q", tc.x, got, tc.want)
		}
	}
}
