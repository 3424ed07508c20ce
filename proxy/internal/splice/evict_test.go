package splice

import (
	"io"
	"sync"
	"testing"

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

func (r *testRegistry) CountEviction() {}

func (r *testRegistry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
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
