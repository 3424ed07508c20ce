package pool

import (
	"math/rand/v2"
	"testing"

	"github.com/rs/zerolog"
)

// TestRegistryKeepsExactlyTheLiveSessions registers sessions, unregisters
// most of them in a random order (twice each, and some never registered),
// and checks that the node's registry holds exactly the rest, each at the
// slot it records, and that its array shrank.
func TestRegistryKeepsExactlyTheLiveSessions(t *testing.T) {
	p, err := New(Config{Nodes: []NodeConfig{{Name: "A", URL: "http://127.0.0.1:1"}, {Name: "B", URL: "http://127.0.0.1:2"}}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, b := p.Node("A"), p.Node("B")
	const n = 5000
	evs := make([]*countingEvictor, n)
	for i := range evs {
		evs[i] = new(countingEvictor)
		a.Register(evs[i])
	}
	stranger := new(countingEvictor)
	b.Register(stranger)
	rng := rand.New(rand.NewPCG(1, 2))
	order := rng.Perm(n)
	gone := order[:n-100]
	for _, i := range gone {
		a.Unregister(evs[i])
		a.Unregister(evs[i]) // a second time does nothing
	}
	a.Unregister(stranger) // registered with B, not A
	a.Unregister(new(countingEvictor))

	live := map[Evictor]bool{}
	for _, i := range order[n-100:] {
		live[evs[i]] = true
	}
	got := a.sessionList()
	if len(got) != len(live) {
		t.Fatalf("registry holds %d sessions, want %d", len(got), len(live))
	}
	for i, e := range got {
		if !live[e] {
			t.Fatalf("slot %d holds a session that was unregistered", i)
		}
		if slot := int(e.registered().slot); slot != i+1 {
			t.Fatalf("session at %d records slot %d", i, slot-1)
		}
	}
	if c := cap(a.sessions); c > 4*len(live) {
		t.Errorf("registry array kept %d slots for %d sessions", c, len(live))
	}
	if l := b.sessionList(); len(l) != 1 || l[0] != Evictor(stranger) {
		t.Errorf("B's registry changed: %v", l)
	}

	// A going down tells exactly the live ones.
	p.evictSpread(t.Context(), a.sessionList(), CloseServiceRestart, 0, always)
	for i, e := range evs {
		want := uint32(0)
		if live[e] {
			want = uint32(CloseServiceRestart)
		}
		if got := e.code.Load(); got != want {
			t.Fatalf("session %d told %d, want %d", i, got, want)
		}
	}
}
