package proxy

import (
	"bytes"
	"errors"
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

func TestEvictWritesCloseAtBoundary(t *testing.T) {
	reg := newTestRegistry()
	r, e := startWS(t, reg)
	first := wsFrame(true, 0x1, []byte("hello"), false)
	r.node.Write(first)
	r.client.SetReadDeadline(time.Now().Add(spliceBound))
	got := make([]byte, len(first))
	if _, err := io.ReadFull(r.client, got); err != nil {
		t.Fatal(err)
	}
	e.Evict(pool.CloseServiceRestart)
	rest := readAll(t, r.client) // the Close frame, then the half-close
	if !bytes.Equal(rest, closeRestart) {
		t.Fatalf("client got % x after eviction, want the 1012 Close frame", rest)
	}
	r.client.Close()
	res := r.wait(t)
	var told *toldError
	if !errors.As(res.err, &told) || told.code != 1012 {
		t.Fatalf("session result %v, want told 1012", res.err)
	}
	if reg.count() != 0 {
		t.Fatal("session still registered after it ended")
	}
	// The node side was closed.
	r.node.SetReadDeadline(time.Now().Add(spliceBound))
	if _, err := r.node.Read(make([]byte, 1)); err == nil {
		t.Fatal("node side still open")
	}
}

func TestEvictWaitsForFrameInFlight(t *testing.T) {
	reg := newTestRegistry()
	r, e := startWS(t, reg)
	big := wsFrame(true, 0x2, bytes.Repeat([]byte{7}, 200<<10), false)
	half := len(big) / 2
	if _, err := r.node.Write(big[:half]); err != nil {
		t.Fatal(err)
	}
	done := make(chan []byte, 1)
	go func() {
		r.client.SetReadDeadline(time.Now().Add(spliceBound))
		b, _ := io.ReadAll(r.client)
		done <- b
	}()
	time.Sleep(50 * time.Millisecond)
	e.Evict(pool.CloseServiceRestart)
	time.Sleep(50 * time.Millisecond)
	// The rest of the frame and one more frame the node sends after it.
	r.node.Write(big[half:])
	r.node.Write(wsFrame(true, 0x1, []byte("late"), false))
	var got []byte
	select {
	case got = <-done:
	case <-time.After(spliceBound):
		t.Fatal("client never saw the end")
	}
	want := append(append([]byte(nil), big...), closeRestart...)
	if !bytes.Equal(got, want) {
		t.Fatalf("client got %d bytes, want the whole frame then Close (%d bytes); tail % x", len(got), len(want), got[max(0, len(got)-20):])
	}
	r.client.Close()
	r.wait(t)
}

func TestNodeVanishingTellsClient(t *testing.T) {
	reg := newTestRegistry()
	r, _ := startWS(t, reg)
	r.node.Write(wsFrame(true, 0x1, []byte("hi"), false))
	r.node.Close() // the node dies without a Close frame
	r.client.SetReadDeadline(time.Now().Add(spliceBound))
	got := readAll(t, r.client)
	want := append(wsFrame(true, 0x1, []byte("hi"), false), closeRestart...)
	if !bytes.Equal(got, want) {
		t.Fatalf("client got % x, want the frame then a 1012 Close", got)
	}
	r.client.Close()
	r.wait(t)
}

func TestNodeCloseFramePassesThrough(t *testing.T) {
	reg := newTestRegistry()
	r, _ := startWS(t, reg)
	closing := wsFrame(true, 0x8, []byte{0x03, 0xe8}, false)
	r.node.Write(closing)
	r.node.CloseWrite()
	r.client.SetReadDeadline(time.Now().Add(spliceBound))
	if got := readAll(t, r.client); !bytes.Equal(got, closing) {
		t.Fatalf("client got % x, want only the node's own Close", got)
	}
	r.client.Close()
	if res := r.wait(t); res.err != nil {
		t.Fatalf("a normal close ended with %v", res.err)
	}
}
