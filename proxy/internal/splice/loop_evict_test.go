//go:build linux

package splice

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/sockio/sockiotest"
	"github.com/tether-lb/tether/proxy/internal/wire"
	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
)

// Evictions and node deaths, on both engines: the Close frame at a frame
// boundary, the counting, and many sessions at once.

// startWSOn starts a WebSocket session on sp registered with reg.
func startWSOn(t *testing.T, sp Engine, reg *testRegistry, tweak func(*Session)) (*rig, pool.Evictor) {
	t.Helper()
	r := startSplice(t, sockiotest.NewPairs(t), sp, func(s *Session, _ *rig) {
		s.WebSocket = true
		s.Registry = reg
		if tweak != nil {
			tweak(s)
		}
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

func TestLoopEvict(t *testing.T) {
	eachEngine(t, func(t *testing.T, sp Engine) {
		t.Run("at a boundary", func(t *testing.T) {
			reg := newTestRegistry()
			r, e := startWSOn(t, sp, reg, nil)
			first := wiretest.Frame(true, 0x1, []byte("hello"), false)
			r.node.Write(first)
			r.client.SetReadDeadline(time.Now().Add(spliceBound))
			expectRead(t, r.client, string(first))
			if n := reg.count(); n != 1 {
				t.Errorf("%d sessions registered, want 1", n)
			}
			e.Evict(pool.CloseServiceRestart)
			e.Evict(pool.CloseGoingAway) // later calls do nothing
			if rest := readAll(t, r.client); !bytes.Equal(rest, wire.CloseFrameFor(1012)) {
				t.Fatalf("client got % x after eviction, want the 1012 Close frame", rest)
			}
			r.node.SetReadDeadline(time.Now().Add(spliceBound))
			if _, err := r.node.Read(make([]byte, 1)); err == nil {
				t.Fatal("node side still open")
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
			e.Evict(pool.CloseServiceRestart) // after the end: harmless
		})
		t.Run("large frame in flight", func(t *testing.T) {
			reg := newTestRegistry()
			r, e := startWSOn(t, sp, reg, nil)
			big := wiretest.Frame(true, 0x2, bytes.Repeat([]byte{7}, 200<<10), false)
			half := len(big) / 2
			r.node.Write(big[:half])
			// The first half reached the client: the engine is inside the
			// frame when the eviction comes.
			r.client.SetReadDeadline(time.Now().Add(spliceBound))
			first := make([]byte, half)
			if _, err := io.ReadFull(r.client, first); err != nil {
				t.Fatal(err)
			}
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(r.client)
				got <- append(first, b...)
			}()
			evicted := make(chan struct{}, 1)
			testHookEvicted = func(ev pool.Evictor) {
				if ev == e {
					select {
					case evicted <- struct{}{}:
					default: // told once already
					}
				}
			}
			defer func() { testHookEvicted = nil }()
			e.Evict(pool.CloseGoingAway)
			select { // the rest reaches the engine after it took the eviction
			case <-evicted:
			case <-time.After(spliceBound):
				t.Fatal("the engine did not take the eviction")
			}
			r.node.Write(big[half:])
			r.node.Write(wiretest.Frame(true, 0x1, []byte("late"), false))
			want := append(append([]byte(nil), big...), wire.CloseFrameFor(1001)...)
			if b := <-got; !bytes.Equal(b, want) {
				t.Fatalf("client got %d bytes, want the whole frame then Close 1001 (%d)", len(b), len(want))
			}
			r.client.Close()
			var told *toldError
			if res := r.wait(t); !errors.As(res.err, &told) || told.code != 1001 {
				t.Fatalf("session result %v, want told 1001", res.err)
			}
		})
		t.Run("frame never finished", func(t *testing.T) {
			reg := newTestRegistry()
			r, e := startWSOn(t, sp, reg, nil)
			frame := wiretest.Frame(true, 0x2, bytes.Repeat([]byte{7}, 1000), false)
			r.node.Write(frame[:100])
			r.client.SetReadDeadline(time.Now().Add(spliceBound))
			expectRead(t, r.client, string(frame[:100]))
			start := time.Now()
			e.Evict(pool.CloseServiceRestart)
			if got := readAll(t, r.client); len(got) != 0 {
				t.Errorf("client got % x, want the end and no Close mid-frame", got)
			}
			res := r.wait(t)
			if d := time.Since(start); !errors.Is(res.err, errMidFrame) || d < evictGrace*3/4 {
				t.Errorf("ended with %v after %v; want errMidFrame after about %v", res.err, d, evictGrace)
			}
		})
		t.Run("plain session closes", func(t *testing.T) {
			reg := newTestRegistry()
			r := startSplice(t, sockiotest.NewPairs(t), sp, func(s *Session, _ *rig) { s.Registry = reg })
			defer r.close()
			e := <-reg.added
			e.Evict(pool.CloseServiceRestart)
			r.client.SetReadDeadline(time.Now().Add(spliceBound))
			if got := readAll(t, r.client); len(got) != 0 {
				t.Errorf("plain client got % x", got)
			}
			if res := r.wait(t); !errors.Is(res.err, errEvicting) {
				t.Errorf("err %v, want errEvicting", res.err)
			}
		})
		t.Run("evicted as it registers", func(t *testing.T) {
			reg := &evictingRegistry{testRegistry: newTestRegistry()}
			r := startSplice(t, sockiotest.NewPairs(t), sp, func(s *Session, _ *rig) {
				s.WebSocket = true
				s.Registry = reg
			})
			defer r.close()
			r.client.SetReadDeadline(time.Now().Add(spliceBound))
			if got := readAll(t, r.client); !bytes.Equal(got, wire.CloseFrameFor(1012)) {
				t.Errorf("client got % x, want the 1012 Close", got)
			}
			r.client.Close()
			r.wait(t)
		})
	})
}

// evictingRegistry evicts each session as it registers, as a *pool.Node
// that is down does.
type evictingRegistry struct{ *testRegistry }

func (r *evictingRegistry) Register(e pool.Evictor) {
	r.testRegistry.Register(e)
	e.Evict(pool.CloseServiceRestart)
}

func TestLoopNodeEnds(t *testing.T) {
	eachEngine(t, func(t *testing.T, sp Engine) {
		t.Run("vanishing tells the client 1012", func(t *testing.T) {
			r, _ := startWSOn(t, sp, newTestRegistry(), nil)
			frame := wiretest.Frame(true, 0x1, []byte("hi"), false)
			r.node.Write(frame)
			r.node.Close()
			r.client.SetReadDeadline(time.Now().Add(spliceBound))
			if got := readAll(t, r.client); !bytes.Equal(got, append(frame, wire.CloseFrameFor(1012)...)) {
				t.Fatalf("client got % x, want the frame then a 1012 Close", got)
			}
			r.client.Close()
			var told *toldError
			if res := r.wait(t); !errors.As(res.err, &told) || told.code != 1012 {
				t.Fatalf("session result %v, want told 1012", res.err)
			}
		})
		t.Run("its own Close passes through", func(t *testing.T) {
			r, _ := startWSOn(t, sp, newTestRegistry(), nil)
			closing := wiretest.Frame(true, 0x8, []byte{0x03, 0xe8}, false)
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
		})
		t.Run("a client that ended its side first is not told", func(t *testing.T) {
			// The client half-closes without a Close frame; the node, seeing
			// the end of its stream, hangs up without one too: an ordinary
			// end, not a node failure.
			r, _ := startWSOn(t, sp, newTestRegistry(), nil)
			r.client.SetDeadline(time.Now().Add(spliceBound))
			r.node.SetDeadline(time.Now().Add(spliceBound))
			frame := wiretest.Frame(true, 0x1, []byte("bye"), true)
			r.client.Write(frame)
			r.client.CloseWrite()
			if got := readAll(t, r.node); !bytes.Equal(got, frame) {
				t.Fatalf("node got % x, want the client's frame then EOF", got)
			}
			r.node.Close()
			if got := readAll(t, r.client); len(got) != 0 {
				t.Fatalf("client got % x, want EOF and no Close frame", got)
			}
			if res := r.wait(t); res.err != nil {
				t.Fatalf("session result %v, want a normal end", res.err)
			}
		})
		t.Run("a told client that never hangs up", func(t *testing.T) {
			// The linger starts after the node vanished: timed from
			// before that, the session cannot end sooner than it.
			r, start := toldClient(t, sp)
			var told *toldError
			if res := r.wait(t); !errors.As(res.err, &told) || time.Since(start) < closeLinger/2 {
				t.Fatalf("session result %v after %v, want told after the linger", res.err, time.Since(start))
			}
		})
		t.Run("a told client that keeps sending", func(t *testing.T) {
			r, _ := toldClient(t, sp)
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for i := 0; i < 1000; i++ { // 10 s at most
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
					if _, err := r.client.Write([]byte("still here")); err != nil {
						return
					}
				}
			}()
			start := time.Now()
			var told *toldError
			if res := r.wait(t); !errors.As(res.err, &told) || time.Since(start) > closeLinger+time.Second {
				t.Fatalf("session result %v after %v, want told once the linger (%v) ends", res.err, time.Since(start), closeLinger)
			}
		})
	})
}

// toldClient starts a WebSocket session on sp whose node vanishes, and
// returns it once its client has read the 1012 Close, with the time just
// before the node went.
func toldClient(t *testing.T, sp Engine) (*rig, time.Time) {
	r, _ := startWSOn(t, sp, newTestRegistry(), nil)
	gone := time.Now()
	r.node.Close()
	r.client.SetReadDeadline(time.Now().Add(spliceBound))
	if got := readAll(t, r.client); !bytes.Equal(got, wire.CloseFrameFor(1012)) {
		t.Fatalf("client got % x", got)
	}
	return r, gone
}

// countingRegistry counts registered sessions and keeps them for evicting.
type countingRegistry struct {
	mu       sync.Mutex
	sessions map[pool.Evictor]struct{}
}

func (r *countingRegistry) Register(e pool.Evictor) {
	r.mu.Lock()
	r.sessions[e] = struct{}{}
	r.mu.Unlock()
}

func (r *countingRegistry) Unregister(e pool.Evictor) {
	r.mu.Lock()
	delete(r.sessions, e)
	r.mu.Unlock()
}

func (r *countingRegistry) CountEviction() {}

func (r *countingRegistry) all() []pool.Evictor {
	r.mu.Lock()
	defer r.mu.Unlock()
	var es []pool.Evictor
	for e := range r.sessions {
		es = append(es, e)
	}
	return es
}
