package proxy

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/tether-lb/tether/pool"
)

// testRegistry records the sessions registered with it.
type testRegistry struct {
	mu       sync.Mutex
	sessions map[pool.Evictor]bool
	added    chan pool.Evictor
}

func newTestRegistry() *testRegistry {
	return &testRegistry{sessions: map[pool.Evictor]bool{}, added: make(chan pool.Evictor, 16)}
}

func (r *testRegistry) Register(e pool.Evictor) {
	r.mu.Lock()
	r.sessions[e] = true
	r.mu.Unlock()
	r.added <- e
}

func (r *testRegistry) Unregister(e pool.Evictor) {
	r.mu.Lock()
	delete(r.sessions, e)
	r.mu.Unlock()
}

func (r *testRegistry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// startWS starts a WebSocket splice registered with reg and returns its rig
// and its Evictor.
func startWS(t *testing.T, reg *testRegistry) (*rig, pool.Evictor) {
	lb := newPairMaker(t)
	r := startSplice(t, lb, testSplicer(), func(s *Session, _ *rig) {
		s.WebSocket = true
		s.Registry = reg
	})
	t.Cleanup(r.close)
	select {
	case e := <-reg.added:
		return r, e
	case <-time.After(spliceBound):
		t.Fatal("session never registered")
		return nil, nil
	}
}

// readAll reads c to EOF (bounded) and returns what came.
func readAll(t *testing.T, c io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}
