package bench

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestOutages(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	type step struct {
		at   time.Duration
		fail bool // a failure at at; else a success
	}
	for _, tc := range []struct {
		name        string
		steps       []step
		gaps        []time.Duration
		unrecovered bool
		first, last time.Duration
	}{
		{name: "no failure", steps: []step{{10 * ms, false}, {20 * ms, false}}},
		{
			name:  "one outage from the first failure to the next success",
			steps: []step{{10 * ms, false}, {20 * ms, true}, {25 * ms, true}, {90 * ms, false}, {95 * ms, false}},
			gaps:  []time.Duration{70 * ms}, first: 20 * ms, last: 25 * ms,
		},
		{
			name:  "two outages",
			steps: []step{{10 * ms, true}, {30 * ms, false}, {40 * ms, true}, {41 * ms, false}},
			gaps:  []time.Duration{20 * ms, ms}, first: 10 * ms, last: 40 * ms,
		},
		{
			name:  "failing at the end",
			steps: []step{{10 * ms, false}, {20 * ms, true}, {30 * ms, false}, {50 * ms, true}},
			gaps:  []time.Duration{10 * ms}, unrecovered: true, first: 20 * ms, last: 50 * ms,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &fakeClock{}
			o := outages{clock: c}
			for _, s := range tc.steps {
				c.t = s.at
				if s.fail {
					o.fail()
				} else {
					o.ok(s.at)
				}
			}
			if len(o.gaps) != len(tc.gaps) || o.down != tc.unrecovered || o.failed != (tc.first > 0) {
				t.Fatalf("gaps %v down %v failed %v, want %v %v %v", o.gaps, o.down, o.failed, tc.gaps, tc.unrecovered, tc.first > 0)
			}
			for i := range tc.gaps {
				if o.gaps[i] != tc.gaps[i] {
					t.Fatalf("gaps %v, want %v", o.gaps, tc.gaps)
				}
			}
			if o.failed && (o.first != tc.first || o.latest != tc.last) {
				t.Fatalf("failures %v..%v, want %v..%v", o.first, o.latest, tc.first, tc.last)
			}
		})
	}
}

func TestOutagesBounded(t *testing.T) {
	t.Parallel()
	c := &fakeClock{}
	o := outages{clock: c}
	for i := range maxOutages + 10 {
		c.t = time.Duration(2*i) * time.Millisecond
		o.fail()
		o.ok(c.t + time.Millisecond)
	}
	if len(o.gaps) != maxOutages || o.dropped != 10 {
		t.Fatalf("%d gaps, %d dropped; want %d and 10", len(o.gaps), o.dropped, maxOutages)
	}
	rep := reconnectReport(time.Unix(100, 0), []*workerStats{{outage: o}, {}})
	if rep == nil || rep.Time.Count != maxOutages || rep.Dropped != 10 || rep.Unrecovered != 0 ||
		!rep.FirstError.Equal(time.Unix(100, 0)) {
		t.Fatalf("report %+v", rep)
	}
	if reconnectReport(time.Now(), []*workerStats{{}}) != nil {
		t.Fatal("a run without failures has a reconnect report")
	}
}

// cutProxy forwards TCP connections to a node; cut closes every
// connection open through it, as a proxy process killed in the middle of
// the traffic, while new connections keep being forwarded (as an L4 tier
// that moves them to another instance).
type cutProxy struct {
	ln   net.Listener
	node string
	mu   sync.Mutex
	open map[net.Conn]*cutLeg // guarded by mu; both legs of each connection
	wg   sync.WaitGroup
}

// cutLeg is one leg of a connection through a cutProxy.
type cutLeg struct {
	client bool   // the client's leg
	head   []byte // the first bytes the client sent (up to 512); guarded by cutProxy.mu
}

func startCutProxy(t *testing.T, node string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, node: node, open: make(map[net.Conn]*cutLeg)}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.cut(nil)
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		n, err := net.DialTimeout("tcp", p.node, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		leg := &cutLeg{client: true}
		p.mu.Lock()
		p.open[c], p.open[n] = leg, &cutLeg{}
		p.mu.Unlock()
		p.wg.Go(func() { p.copy(n, c, leg) })
		p.wg.Go(func() { p.copy(c, n, nil) })
	}
}

// copy moves bytes from src to dst until either ends, then closes both;
// the first bytes go to head, if any.
func (p *cutProxy) copy(dst, src net.Conn, head *cutLeg) {
	if head != nil {
		buf := make([]byte, 512)
		n, err := src.Read(buf)
		p.mu.Lock()
		head.head = buf[:n]
		p.mu.Unlock()
		if _, werr := dst.Write(buf[:n]); err == nil && werr == nil {
			_, _ = io.Copy(dst, src)
		}
	} else {
		_, _ = io.Copy(dst, src)
	}
	p.mu.Lock()
	delete(p.open, dst)
	delete(p.open, src)
	p.mu.Unlock()
	dst.Close()
	src.Close()
}

// count returns how many client legs open now have first bytes that
// contain match.
func (p *cutProxy) count(match []byte) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, leg := range p.open {
		if leg.client && bytes.Contains(leg.head, match) {
			n++
		}
	}
	return n
}

// cut closes the client legs open now whose first bytes contain match
// (all if match is nil), and returns how many it closed. Closing a client
// leg ends its node leg too.
func (p *cutProxy) cut(match []byte) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c, leg := range p.open {
		if !leg.client || (match != nil && !bytes.Contains(leg.head, match)) {
			if match == nil {
				c.Close()
			}
			continue
		}
		c.Close()
		delete(p.open, c)
		n++
	}
	return n
}

// TestRunLoadReconnects: the clients of a proxy whose connections are all
// cut in the middle of a run reconnect, and the report measures it: every
// failure after the cut, each client back in service before the end, an
// outage measured for each failed client, none of the cut sessions ended
// by its node.
func TestRunLoadReconnects(t *testing.T) {
	t.Parallel()
	for _, scenario := range []string{ScenarioMixed, ScenarioLongPoll} {
		t.Run(scenario, func(t *testing.T) {
			t.Parallel()
			n := startNode(t, NodeConfig{Name: "CB_1", PollWait: time.Second})
			p := startCutProxy(t, n.addr)
			type result struct {
				rep *Report
				err error
			}
			done := make(chan result, 1)
			go func() {
				rep, err := RunLoad(context.Background(), LoadConfig{
					Target: "http://" + p.ln.Addr().String(), Scenario: scenario, Duration: 4 * time.Second,
					Conns: 2, Sessions: 3, MessageBytes: 64, Timeout: 2 * time.Second,
				}, zerolog.Nop())
				done <- result{rep, err}
			}()
			started := time.Now()
			// Cut once every session has relayed messages.
			waitFor(t, func() bool { return n.Stats().Relayed >= 30 })
			if since := time.Since(started); since > 2*time.Second {
				t.Fatalf("the load took %v to relay its first messages: no time is left to reconnect", since)
			}
			cutAt := time.Now()
			if cut := p.cut(nil); cut == 0 {
				t.Fatal("no connection to cut")
			}
			res := <-done
			if res.err != nil {
				t.Fatal(res.err)
			}
			rep := res.rep
			var text strings.Builder
			if err := rep.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			t.Logf("cut at %s\n%s", cutAt.Format("15:04:05.000"), text.String())
			rc := rep.Reconnect
			switch {
			case rc == nil:
				t.Fatal("no reconnect report after the cut")
			case rc.Unrecovered != 0:
				t.Fatalf("%d clients not back in service", rc.Unrecovered)
			case rc.Time.Count == 0 || rc.Time.Max <= 0:
				t.Fatalf("no outage measured: %+v", rc)
			case rc.FirstError.Before(cutAt):
				t.Fatalf("first failure at %v, before the cut at %v", rc.FirstError, cutAt)
			case rep.StickyViolations != 0 || rep.SessionsEnded != 0:
				t.Fatalf("violations %d, ended %d", rep.StickyViolations, rep.SessionsEnded)
			case !strings.Contains(text.String(), "reconnects "):
				t.Fatal("the text report has no reconnect line")
			}
			if rc.Time.Count > rep.ErrorCount() {
				t.Errorf("%d outages from %d errors", rc.Time.Count, rep.ErrorCount())
			}
			for kind := range rep.Errors {
				// A cut WebSocket ends without a Close frame: 1006.
				if !strings.HasSuffix(kind, "_closed") && !strings.HasSuffix(kind, "_close_1006") {
					t.Errorf("error %s: want only connections closed by the cut", kind)
				}
			}
		})
	}
}

// TestRunLoadCustomerCut: a co-browse session whose customer WebSocket is
// cut while its agent's lasts (the two went through different proxies)
// fails at once with the customer's loss and reconnects, rather than
// waiting out the agent's read timeout.
func TestRunLoadCustomerCut(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	p := startCutProxy(t, n.addr)
	const timeout = 5 * time.Second
	done := make(chan *Report, 1)
	go func() {
		rep, err := RunLoad(context.Background(), LoadConfig{
			Target: "http://" + p.ln.Addr().String(), Scenario: ScenarioCobrowse, Duration: 3 * time.Second,
			Sessions: 3, MessageBytes: 64, Timeout: timeout,
		}, zerolog.Nop())
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	// Every customer connected (a loaded machine may bring the last one
	// after the others have relayed plenty), and messages flowing.
	waitFor(t, func() bool { return p.count([]byte("role=customer")) == 3 && n.Stats().Relayed >= 30 })
	if cut := p.cut([]byte("role=customer")); cut != 3 {
		t.Fatalf("cut %d customer WebSockets, want 3", cut)
	}
	rep := <-done
	if rep == nil {
		t.FailNow()
	}
	var text strings.Builder
	_ = rep.WriteText(&text)
	t.Logf("\n%s", text.String())
	if rep.Errors["ws_recv_timeout"] != 0 || rep.Reconnect == nil || rep.Reconnect.Unrecovered != 0 {
		t.Fatalf("errors %v, reconnect %+v: want the cut sessions failed at once and back", rep.Errors, rep.Reconnect)
	}
	if rep.Reconnect.Time.Count != 3 || rep.Reconnect.Time.Max >= timeout/2 {
		t.Fatalf("reconnects %+v: want 3, each well under the %v timeout", rep.Reconnect.Time, timeout)
	}
	if rep.ErrorCount() != 3 || rep.StickyViolations != 0 || rep.SessionsEnded != 0 {
		t.Fatalf("errors %v, violations %d, ended %d: want one error a cut session", rep.Errors, rep.StickyViolations, rep.SessionsEnded)
	}
}
