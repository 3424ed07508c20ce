package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestHeldClean: a population held straight on a node sees every message,
// in order, and no session closed.
func TestHeldClean(t *testing.T) {
	tn := startNode(t, NodeConfig{Name: "CB_1"})
	h, err := Hold(context.Background(), HeldConfig{Addr: tn.addr, Pairs: 20, Nodes: []string{"CB_1"}, Interval: 20 * time.Millisecond, Prefix: "clean"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if !waitUntil(5*time.Second, func() bool { return h.Received() >= 400 }) {
		t.Fatalf("only %d messages", h.Received())
	}
	h.Mark()
	if !waitUntil(5*time.Second, func() bool { return h.Stats().PauseP50 > 0 }) {
		t.Fatal("no delay measured after Mark")
	}
	st := h.Stats()
	if !st.Clean() || st.Conns != 40 || st.PauseMax <= 0 || st.PauseMax > 5*time.Second {
		t.Fatalf("%v: %v", st, st.FirstErr)
	}
}

// TestHeldNoticesClose: sessions whose node goes away are counted closed,
// each once.
func TestHeldNoticesClose(t *testing.T) {
	tn := startNode(t, NodeConfig{Name: "CB_1"})
	h, err := Hold(context.Background(), HeldConfig{Addr: tn.addr, Pairs: 5, Nodes: []string{"CB_1"}, Interval: 20 * time.Millisecond, Prefix: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if !waitUntil(5*time.Second, func() bool { return h.Received() >= 50 }) {
		t.Fatalf("only %d messages", h.Received())
	}
	tn.stop(t)
	if !waitUntil(5*time.Second, func() bool { return h.Stats().Closed == 10 }) {
		t.Fatalf("closed %d, want 10", h.Stats().Closed)
	}
	if st := h.Stats(); st.Clean() || st.FirstErr == nil || !strings.Contains(st.FirstErr.Error(), "closed") || st.CloseCodes[-1]+st.CloseCodes[1001]+st.CloseCodes[1006] != 10 {
		t.Fatalf("%v: %v", st, st.FirstErr)
	}
}

// TestHeldRefused: a population that cannot open fails Hold, naming why.
func TestHeldRefused(t *testing.T) {
	tn := startNode(t, NodeConfig{Name: "CB_1"})
	addr := tn.addr
	tn.stop(t)
	if _, err := Hold(context.Background(), HeldConfig{Addr: addr, Pairs: 3, Nodes: []string{"CB_1"}, Interval: time.Second, Timeout: time.Second}); err == nil {
		t.Fatal("Hold succeeded against a closed port")
	}
}

func waitUntil(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}
