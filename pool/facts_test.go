package pool

import (
	"testing"
	"time"
)

// TestFactsSeed: the facts of one pool seed another, which starts each node
// in the same state (and the same Since), routes accordingly, and ignores
// a seed whose URL is not the node's.
func TestFactsSeed(t *testing.T) {
	urls := []string{"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3", "http://127.0.0.1:4"}
	old := newTestPool(t, Config{}, urls...)
	old.Node("CB_Server_1").Drain()
	old.Node("CB_Server_2").setHealth(false, "refused")
	old.Node("CB_Server_3").Drain()
	old.Node("CB_Server_3").setHealth(false, "refused")
	facts := old.Facts()
	if len(facts) != 4 || !facts[0].Drained || facts[0].Down || !facts[1].Down || !facts[2].Down || !facts[2].Drained || facts[3].Down || facts[3].Drained {
		t.Fatalf("facts %+v", facts)
	}
	facts = append(facts, NodeFacts{Name: "CB_Server_9", URL: "http://127.0.0.1:9", Drained: true}) // no such node: unused
	moved := facts[3]
	moved.URL, moved.Drained = "http://127.0.0.1:44", true // another URL: not this node
	facts[3] = moved

	// Active checks on but far apart: only the seed decides the states.
	next := newTestPool(t, Config{Seed: facts, HealthInterval: time.Hour}, urls...)
	want := map[string]State{"CB_Server_1": StateDraining, "CB_Server_2": StateDown, "CB_Server_3": StateDown, "CB_Server_4": StateUp}
	for name, s := range want {
		n := next.Node(name)
		if n.State() != s {
			t.Errorf("%s: %s, want %s", name, n.State(), s)
		}
		if name != "CB_Server_4" && !n.Since().Equal(old.Node(name).Since()) {
			t.Errorf("%s: since %s, want %s", name, n.Since(), old.Node(name).Since())
		}
	}
	if pick := next.Table().Pick(nil); pick == nil || pick.Name != "CB_Server_4" {
		t.Fatalf("picked %v, want CB_Server_4 (the only node up)", pick)
	}
	// Enable still undoes a carried drain.
	next.Node("CB_Server_1").Enable()
	if s := next.Node("CB_Server_1").State(); s != StateUp {
		t.Fatalf("after Enable: %s", s)
	}
}
