package pool

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// countingEvictor records the Close code it was told.
type countingEvictor struct {
	Registered
	code atomic.Uint32
}

func (e *countingEvictor) Evict(code uint16) { e.code.Store(uint32(code)) }

func TestUpdateAddsRemovesAndReplaces(t *testing.T) {
	cfg := Config{DrainTimeout: 100 * time.Millisecond, Nodes: []NodeConfig{
		{Name: "A", URL: "http://127.0.0.1:1"},
		{Name: "B", URL: "http://127.0.0.1:2"},
		{Name: "C", URL: "http://127.0.0.1:3"},
	}}
	p, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, b, c := p.Node("A"), p.Node("B"), p.Node("C")
	var leases [7]Lease // state that must survive the reload
	for i := range leases {
		leases[i] = a.Acquire()
	}
	var sessB countingEvictor
	b.Register(&sessB)

	// B removed, C's URL changed, D added; A unchanged.
	cfg.Nodes = []NodeConfig{
		{Name: "A", URL: "http://127.0.0.1:1"},
		{Name: "C", URL: "http://127.0.0.1:33"},
		{Name: "D", URL: "http://127.0.0.1:4"},
	}
	if err := p.Update(cfg); err != nil {
		t.Fatal(err)
	}
	tb := p.Table()
	if p.Node("A") != a || a.Active() != 7 {
		t.Fatal("an unchanged node was replaced")
	}
	if got := p.Node("C"); got == c || got.Addr != "127.0.0.1:33" {
		t.Fatalf("C not replaced by its new URL: %+v", got)
	}
	if p.Node("B") != b || !tb.Routable(b) {
		t.Fatal("a removed node must keep its sticky traffic while it drains")
	}
	for range 20 {
		if n := tb.Pick(nil); n == b || n == c {
			t.Fatalf("a draining node (%s) was picked for a new session", n.Name)
		}
	}
	if p.Node("D") == nil {
		t.Fatal("D not added")
	}
	// After the drain timeout B is gone and its session told 1001.
	deadline := time.Now().Add(3 * time.Second)
	for p.Node("B") != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p.Node("B") != nil {
		t.Fatal("removed node still in the table after its drain")
	}
	if code := sessB.code.Load(); code != uint32(CloseGoingAway) {
		t.Fatalf("removed node's session told %d, want 1001", code)
	}
	// C's old copy drains on a timer of its own, as long as B's.
	for len(p.Table().Nodes()) != 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(p.Table().Nodes()) != 3 {
		t.Fatalf("%d nodes in the table, want A, C and D", len(p.Table().Nodes()))
	}
	bad := cfg
	bad.Nodes = nil
	if err := p.Update(bad); err == nil {
		t.Fatal("a configuration without nodes was accepted")
	}
	if p.Node("A") != a {
		t.Fatal("a rejected update changed the pool")
	}
}
