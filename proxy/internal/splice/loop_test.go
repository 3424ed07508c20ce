//go:build linux

package splice

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/sockio/sockiotest"
	"github.com/tether-lb/tether/proxy/internal/wire"
	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// The loop splicer's tests run the goroutine splicer's checks against both
// engines, so the two keep one behaviour. Each subtest builds its splicer
// and stops it before goleak looks.

type spliceEngine struct {
	name string
	open func(t testing.TB) (Engine, func())
}

var spliceEngines = []spliceEngine{
	{"goroutine", func(testing.TB) (Engine, func()) { return testSplicer(), func() {} }},
	{"loop", func(t testing.TB) (Engine, func()) { ls := newTestLoops(t); return ls, ls.Close }},
}

func newTestLoops(t testing.TB) *Loops {
	t.Helper()
	ls, err := NewLoops(2, 0, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// eachEngine runs f as a subtest per engine, goleak-checked after the
// engine's splicer is closed.
func eachEngine(t *testing.T, f func(t *testing.T, sp Engine)) {
	for _, eng := range spliceEngines {
		t.Run(eng.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			sp, stop := eng.open(t)
			defer stop()
			f(t, sp)
		})
	}
}

// withLoops runs f against a fresh loop splicer, goleak-checked after Close.
func withLoops(t *testing.T, f func(ls *Loops)) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ls := newTestLoops(t)
	defer ls.Close()
	f(ls)
}

func TestLoopSpliceTransparent(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	cases := []struct {
		name             string
		toNode, toClient int
	}{
		{"one byte each", 1, 1},
		{"one way only", 70_000, 0},
		{"other way only", 0, 70_000},
		{"buffer edges", defaultSpliceBuf, defaultSpliceBuf + 1},
		{"4MB up 1MB down", 4 << 20, 1 << 20},
		{"random small", 1 + rng.IntN(64<<10), 1 + rng.IntN(64<<10)},
		{"random large", 1 + rng.IntN(4<<20), 1 + rng.IntN(4<<20)},
	}
	eachEngine(t, func(t *testing.T, sp Engine) {
		lb := sockiotest.NewPairs(t)
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := startSplice(t, lb, sp, nil)
				defer r.close()
				r.client.SetDeadline(time.Now().Add(spliceBound))
				r.node.SetDeadline(time.Now().Add(spliceBound))
				up, down := newHashFlow(), newHashFlow()
				go writeSplit(r.client, tc.toNode, seed+uint64(2*i), up.sent, up.errs)
				go hashToEOF(r.node, up.got, up.count, up.errs)
				go writeSplit(r.node, tc.toClient, seed+uint64(2*i+1), down.sent, down.errs)
				go hashToEOF(r.client, down.got, down.count, down.errs)
				up.check(t, "client→node", tc.toNode)
				down.check(t, "node→client", tc.toClient)
				res := r.wait(t)
				if res.err != nil || res.toNode != int64(tc.toNode) || res.toClient != int64(tc.toClient) {
					t.Errorf("Splice = %d, %d, %v; want %d, %d, nil", res.toNode, res.toClient, res.err, tc.toNode, tc.toClient)
				}
			})
		}
	})
}

// wsTraffic returns a random WebSocket stream as one side sends it:
// fragmented messages with pings and pongs between their fragments, single
// frames of assorted sizes, one message of big bytes, and last a Close.
func wsTraffic(rng *rand.Rand, masked bool, big int) []byte {
	var s []byte
	payload := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		return p
	}
	control := func() {
		op := []byte{0x9, 0xA}[rng.IntN(2)]
		s = append(s, wiretest.Frame(true, op, payload(rng.IntN(126)), masked)...)
	}
	for range 3 + rng.IntN(5) {
		switch rng.IntN(3) {
		case 0: // a fragmented message, control frames between fragments
			frags := 2 + rng.IntN(5)
			for i := range frags {
				op := byte(0x0)
				if i == 0 {
					op = []byte{0x1, 0x2}[rng.IntN(2)]
				}
				s = append(s, wiretest.Frame(i == frags-1, op, payload(rng.IntN(70_000)), masked)...)
				if rng.IntN(2) == 0 {
					control()
				}
			}
		case 1:
			s = append(s, wiretest.Frame(true, 0x2, payload(rng.IntN(200_000)), masked)...)
		default:
			control()
		}
		if rng.IntN(3) == 0 {
			s = append(s, wiretest.Frame(true, 0x2, payload(big), masked)...)
			big = 0
		}
	}
	if big > 0 {
		s = append(s, wiretest.Frame(true, 0x2, payload(big), masked)...)
	}
	return append(s, wiretest.Frame(true, 0x8, []byte{0x03, 0xe8}, masked)...)
}

// writeBytesSplit writes data to c in random-sized writes, then half-closes c.
func writeBytesSplit(c *net.TCPConn, data []byte, seed uint64, errs chan<- error) {
	rng := rand.New(rand.NewPCG(seed, 3))
	for len(data) > 0 {
		k := 1 + rng.IntN(min(len(data), 1<<17))
		if rng.IntN(4) == 0 {
			k = 1 + rng.IntN(min(len(data), 16))
		}
		if _, err := c.Write(data[:k]); err != nil {
			errs <- err
			return
		}
		data = data[k:]
	}
	errs <- c.CloseWrite()
}

func TestLoopSpliceWebSocketTransparent(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 4))
	fromNode := wsTraffic(rng, false, 16<<20)
	fromClient := wsTraffic(rng, true, 4<<20)
	eachEngine(t, func(t *testing.T, sp Engine) {
		lb := sockiotest.NewPairs(t)
		r := startSplice(t, lb, sp, func(s *Session, _ *rig) { s.WebSocket = true })
		defer r.close()
		r.client.SetDeadline(time.Now().Add(spliceBound))
		r.node.SetDeadline(time.Now().Add(spliceBound))
		up, down := newHashFlow(), newHashFlow()
		go writeBytesSplit(r.client, fromClient, seed+1, up.errs)
		go hashToEOF(r.node, up.got, up.count, up.errs)
		go writeBytesSplit(r.node, fromNode, seed+2, down.errs)
		go hashToEOF(r.client, down.got, down.count, down.errs)
		up.sent <- sha256.Sum256(fromClient)
		down.sent <- sha256.Sum256(fromNode)
		up.check(t, "client→node", len(fromClient))
		down.check(t, "node→client", len(fromNode))
		res := r.wait(t)
		if res.err != nil || res.toNode != int64(len(fromClient)) || res.toClient != int64(len(fromNode)) {
			t.Errorf("Splice = %+v; want %d, %d, nil", res, len(fromClient), len(fromNode))
		}
	})
}

func TestLoopSplicePrefix(t *testing.T) {
	eachEngine(t, func(t *testing.T, sp Engine) {
		lb := sockiotest.NewPairs(t)
		var released int
		r := startSplice(t, lb, sp, func(s *Session, _ *rig) {
			s.ClientBuf = []byte("GET-rest|")
			s.NodeBuf = []byte("101-rest|")
			s.Release = func() { released++ }
		})
		defer r.close()
		r.client.SetDeadline(time.Now().Add(spliceBound))
		r.node.SetDeadline(time.Now().Add(spliceBound))
		// Sent at once: the prefixes must still arrive first.
		r.client.Write([]byte("from client"))
		r.node.Write([]byte("from node"))
		expectRead(t, r.node, "GET-rest|from client")
		expectRead(t, r.client, "101-rest|from node")
		r.close()
		res := r.wait(t)
		if res.toNode != 20 || res.toClient != 18 || released != 1 {
			t.Errorf("counts %d, %d, Release called %d times; want 20, 18, 1", res.toNode, res.toClient, released)
		}
	})
}

// TestLoopSplicePrefixMidFrame: a NodeBuf that ends inside a frame is
// tracked, so an eviction waits for the rest of that frame.
func TestLoopSplicePrefixMidFrame(t *testing.T) {
	withLoops(t, func(ls *Loops) {
		reg := newTestRegistry()
		frame := wiretest.Frame(true, 0x1, bytes.Repeat([]byte{'a'}, 100), false)
		r, e := startWSOn(t, ls, reg, func(s *Session) { s.NodeBuf = frame[:10] })
		r.client.SetReadDeadline(time.Now().Add(spliceBound))
		expectRead(t, r.client, string(frame[:10]))
		// The node's next bytes must reach the loop after the eviction
		// (bytes it moved before would rightly pass).
		evicted := make(chan struct{}, 1)
		testHookEvicted = func(pool.Evictor) { evicted <- struct{}{} }
		defer func() { testHookEvicted = nil }()
		e.Evict(pool.CloseServiceRestart)
		select {
		case <-evicted:
		case <-time.After(spliceBound):
			t.Fatal("the loop did not take the Evict command")
		}
		r.node.Write(frame[10:])
		r.node.Write(wiretest.Frame(true, 0x1, []byte("late"), false))
		if got := readAll(t, r.client); !bytes.Equal(got, append(frame[10:], wire.CloseFrameFor(1012)...)) {
			t.Fatalf("client got % x, want the frame's rest then Close", got)
		}
		r.client.Close()
		r.wait(t)
	})
}

func expectRead(t *testing.T, c net.Conn, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("read %q, want %q", got, want)
	}
}

func TestLoopSpliceHalfClose(t *testing.T) {
	eachEngine(t, func(t *testing.T, sp Engine) {
		lb := sockiotest.NewPairs(t)
		for _, first := range []string{"client", "node"} {
			t.Run(first+" first", func(t *testing.T) {
				r := startSplice(t, lb, sp, nil)
				defer r.close()
				r.client.SetDeadline(time.Now().Add(spliceBound))
				r.node.SetDeadline(time.Now().Add(spliceBound))
				a, b := r.client, r.node
				if first == "node" {
					a, b = b, a
				}
				a.Write([]byte("last words"))
				a.CloseWrite()
				if got, err := io.ReadAll(b); err != nil || string(got) != "last words" {
					t.Fatalf("other side read %q, %v", got, err)
				}
				b.Write([]byte("still flowing"))
				expectRead(t, a, "still flowing")
				select {
				case res := <-r.done:
					t.Fatalf("session ended after one half-close: %+v", res)
				default:
				}
				b.CloseWrite()
				if got, err := io.ReadAll(a); err != nil || len(got) != 0 {
					t.Fatalf("half-closed side read %q, %v; want EOF", got, err)
				}
				if res := r.wait(t); res.err != nil || res.toNode+res.toClient != 23 {
					t.Errorf("Splice = %+v", res)
				}
			})
		}
	})
}

func TestLoopSpliceReset(t *testing.T) {
	eachEngine(t, func(t *testing.T, sp Engine) {
		lb := sockiotest.NewPairs(t)
		t.Run("client resets mid-stream", func(t *testing.T) {
			r := startSplice(t, lb, sp, nil)
			defer r.close()
			r.client.SetDeadline(time.Now().Add(spliceBound))
			r.node.SetDeadline(time.Now().Add(spliceBound))
			streamErr := make(chan error, 1)
			go streamUntilError(r.node, streamErr)
			if _, err := io.ReadFull(r.client, make([]byte, 100<<10)); err != nil {
				t.Fatal(err)
			}
			r.client.SetLinger(0)
			r.client.Close()
			if res := r.wait(t); res.err != nil {
				t.Errorf("a reset is a normal end, got %v", res.err)
			}
			if err := <-streamErr; err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("node writes ended with %v; want the session closed", err)
			}
		})
		t.Run("node resets mid-frame", func(t *testing.T) {
			r := startSplice(t, lb, sp, func(s *Session, _ *rig) { s.WebSocket = true })
			defer r.close()
			r.client.SetDeadline(time.Now().Add(spliceBound))
			frame := wiretest.Frame(true, 0x2, bytes.Repeat([]byte{5}, 1000), false)
			r.node.Write(frame[:300])
			expectRead(t, r.client, string(frame[:300]))
			r.node.SetLinger(0)
			r.node.Close()
			// No Close frame can be placed mid-frame: the client sees the end.
			if got, _ := io.ReadAll(r.client); len(got) != 0 {
				t.Errorf("client got % x after the reset, want nothing", got)
			}
			if res := r.wait(t); !errors.Is(res.err, errMidFrame) {
				t.Errorf("err %v, want errMidFrame", res.err)
			}
		})
		t.Run("client resets mid-frame", func(t *testing.T) {
			r := startSplice(t, lb, sp, func(s *Session, _ *rig) { s.WebSocket = true })
			defer r.close()
			r.node.SetDeadline(time.Now().Add(spliceBound))
			frame := wiretest.Frame(true, 0x2, bytes.Repeat([]byte{5}, 1000), true)
			r.client.Write(frame[:300])
			expectRead(t, r.node, string(frame[:300]))
			r.client.SetLinger(0)
			r.client.Close()
			if res := r.wait(t); res.err != nil {
				t.Errorf("a client reset is a normal end, got %v", res.err)
			}
			if _, err := r.node.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("node read %v after the session ended; want EOF or reset", err)
			}
		})
	})
}

// TestLoopSpliceSlowReader: a client that stops reading pauses the node (its
// writes block) while tether holds at most one buffer, then gets every byte.
func TestLoopSpliceSlowReader(t *testing.T) {
	eachEngine(t, func(t *testing.T, sp Engine) {
		waitNoBufs(t)
		lb := sockiotest.NewPairs(t)
		r := startSplice(t, lb, sp, func(s *Session, _ *rig) { s.WriteTimeout = spliceBound })
		defer r.close()
		r.node.SetWriteDeadline(time.Now().Add(time.Second))
		wrote := make(chan int64, 1)
		go func() {
			var n int64
			buf := make([]byte, 16<<10)
			for {
				k, err := r.node.Write(buf)
				n += int64(k)
				if err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						t.Errorf("node write: %v", err)
					}
					wrote <- n
					return
				}
			}
		}()
		var sent int64
		select {
		case sent = <-wrote:
		case <-time.After(spliceBound):
			t.Fatal("node writes never blocked")
		}
		if held := bufsOut.Load(); held > 1 {
			t.Errorf("%d buffers held for one stalled direction, want at most 1", held)
		}
		t.Logf("node wrote %d KiB before it was paused (kernel buffers)", sent>>10)
		r.node.CloseWrite()
		r.client.SetReadDeadline(time.Now().Add(spliceBound))
		n, err := io.Copy(io.Discard, r.client)
		if err != nil || n != sent {
			t.Fatalf("client read %d bytes, %v; want %d", n, err, sent)
		}
		r.client.Close()
		if res := r.wait(t); res.toClient != sent {
			t.Errorf("toClient %d, want %d", res.toClient, sent)
		}
	})
}

func TestLoopSpliceIdleTimeout(t *testing.T) {
	const idle = 250 * time.Millisecond
	idleSession := func(s *Session, _ *rig) { s.IdleTimeout = idle }
	eachEngine(t, func(t *testing.T, sp Engine) {
		lb := sockiotest.NewPairs(t)
		t.Run("idle from the start", func(t *testing.T) {
			start := time.Now()
			r := startSplice(t, lb, sp, idleSession)
			defer r.close()
			if res := r.wait(t); !errors.Is(res.err, errSpliceIdle) {
				t.Errorf("err %v, want errSpliceIdle", res.err)
			}
			if d := time.Since(start); d < idle {
				t.Errorf("ended after %v, before the idle timeout %v", d, idle)
			}
			r.client.SetDeadline(time.Now().Add(spliceBound))
			if _, err := r.client.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("client read %v, want EOF", err)
			}
		})
		t.Run("traffic one way keeps both alive", func(t *testing.T) {
			// The premise is a byte every idle/5. A machine that stalls
			// this goroutine for half the idle timeout breaks it (the
			// session may then rightly end): such an attempt is run again,
			// up to five times.
			var r *rig
			var sent time.Time // before the last byte went to the node
			for attempt := 1; ; attempt++ {
				r = startSplice(t, lb, sp, idleSession)
				r.client.SetDeadline(time.Now().Add(spliceBound))
				b := make([]byte, 1)
				stalled := false
				last := time.Now()
				for end := last.Add(4 * idle); time.Now().Before(end); {
					time.Sleep(idle / 5)
					if time.Since(last) > idle/2 {
						stalled = true
						break
					}
					// The session moves this byte after now: its idle
					// clock cannot start before sent.
					sent = time.Now()
					r.node.Write([]byte{'x'})
					_, err := io.ReadFull(r.client, b)
					if time.Since(last) > idle/2 {
						stalled = true
						break
					}
					if err != nil {
						t.Fatalf("session ended while node→client traffic flowed: %v", err)
					}
					last = time.Now()
				}
				if !stalled {
					break
				}
				r.close()
				if attempt == 5 {
					t.Fatalf("the test goroutine stalled past half the idle timeout in %d attempts", attempt)
				}
				t.Logf("attempt %d: stalled past half the idle timeout; again", attempt)
			}
			defer r.close()
			if res := r.wait(t); !errors.Is(res.err, errSpliceIdle) {
				t.Errorf("err %v, want errSpliceIdle", res.err)
			}
			if d := time.Since(sent); d < idle*3/4 {
				t.Errorf("ended %v after the last byte, want about %v", d, idle)
			}
		})
		t.Run("a slow reader is not idle", func(t *testing.T) {
			const size = 4 << 20
			r := startSplice(t, lb, sp, func(s *Session, r *rig) {
				s.IdleTimeout = idle
				s.WriteTimeout = spliceBound
				r.proxyClient.SetWriteBuffer(4 << 10)
			})
			defer r.close()
			r.client.SetDeadline(time.Now().Add(spliceBound))
			r.node.SetDeadline(time.Now().Add(spliceBound))
			wrote := make(chan error, 1)
			go writeOnce(r.node, make([]byte, size), wrote)
			time.Sleep(2 * idle)
			if n, err := io.ReadFull(r.client, make([]byte, size)); err != nil {
				t.Fatalf("client read %d of %d bytes: %v", n, size, err)
			}
			if err := <-wrote; err != nil {
				t.Fatal(err)
			}
			if res := r.wait(t); !errors.Is(res.err, errSpliceIdle) || res.toClient != size {
				t.Errorf("Splice = %+v, want %d bytes then errSpliceIdle", res, size)
			}
		})
	})
}

func TestLoopSpliceWriteTimeout(t *testing.T) {
	eachEngine(t, func(t *testing.T, sp Engine) {
		lb := sockiotest.NewPairs(t)
		r := startSplice(t, lb, sp, func(s *Session, r *rig) {
			s.WriteTimeout = 200 * time.Millisecond
			r.proxyClient.SetWriteBuffer(4 << 10)
		})
		defer r.close()
		r.node.SetDeadline(time.Now().Add(spliceBound))
		streamErr := make(chan error, 1)
		go streamUntilError(r.node, streamErr) // the client never reads
		res := r.wait(t)
		if !errors.Is(res.err, os.ErrDeadlineExceeded) || !bytes.Contains([]byte(res.err.Error()), []byte("to client")) {
			t.Errorf("err %v, want a write timeout to the client", res.err)
		}
		if err := <-streamErr; errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("node writes only stopped at the test bound: %v", err)
		}
	})
}

// TestLoopEvictMany: evicting hundreds of sessions takes no goroutine per
// session, and every client is told.
func TestLoopEvictMany(t *testing.T) {
	const sessions = 300
	withLoops(t, func(ls *Loops) {
		lb := sockiotest.NewPairs(t)
		reg := &countingRegistry{sessions: map[pool.Evictor]struct{}{}}
		done := make(chan spliceResult, sessions)
		clients := make([]*net.TCPConn, sessions)
		g0 := runtime.NumGoroutine()
		for i := range clients {
			var pc, pn, node *net.TCPConn
			clients[i], pc = lb.Pair(t)
			pn, node = lb.Pair(t)
			defer clients[i].Close()
			defer node.Close()
			runSplice(ls, &Session{Client: pc, Node: pn, WebSocket: true, Registry: reg}, done)
		}
		if g := runtime.NumGoroutine(); g > g0 {
			t.Errorf("%d goroutines for %d sessions, want %d as before", g, sessions, g0)
		}
		es := reg.all()
		if len(es) != sessions {
			t.Fatalf("%d sessions registered, want %d", len(es), sessions)
		}
		for _, e := range es {
			e.Evict(pool.CloseServiceRestart)
		}
		if g := runtime.NumGoroutine(); g > g0 {
			t.Errorf("%d goroutines while evicting, want %d", g, g0)
		}
		for _, c := range clients {
			c.SetReadDeadline(time.Now().Add(spliceBound))
			if got := readAll(t, c); !bytes.Equal(got, wire.CloseFrameFor(1012)) {
				t.Fatalf("client got % x, want the 1012 Close", got)
			}
			c.Close()
		}
		for range sessions {
			select {
			case res := <-done:
				if _, ok := res.err.(*toldError); !ok {
					t.Errorf("result %v, want told", res.err)
				}
			case <-time.After(spliceBound):
				t.Fatal("sessions did not end")
			}
		}
		if n := len(reg.all()); n != 0 {
			t.Errorf("%d sessions still registered", n)
		}
	})
}

func TestLoopIdleHoldsNothing(t *testing.T) {
	const sessions = 50
	withLoops(t, func(ls *Loops) {
		lb := sockiotest.NewPairs(t)
		fds0, pipes0 := settledFDs(t)
		g0 := runtime.NumGoroutine()
		rigs := openIdleRigs(t, lb, ls, sessions)
		waitNoBufs(t)
		waitGoroutines(t, g0)
		fds1, pipes1 := countFDs(t)
		if got, want := fds1-fds0, 4*sessions; got != want {
			t.Errorf("descriptors grew by %d for %d sessions, want %d (2 per session plus 2 test peers)", got, sessions, want)
		}
		if pipes1 != pipes0 {
			t.Errorf("pipes grew from %d to %d", pipes0, pipes1)
		}
		closeRigs(t, rigs)
		checkFDsBack(t, fds0)
	})
}

// waitGoroutines waits until the goroutine count is back to n or fewer (the
// tests' short-lived starters have returned), failing at the bound.
func waitGoroutines(t testing.TB, n int) {
	t.Helper()
	for end := time.Now().Add(spliceBound); runtime.NumGoroutine() > n; {
		if time.Now().After(end) {
			t.Fatalf("%d goroutines, want %d: sessions hold goroutines", runtime.NumGoroutine(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLoopFallsBackWithoutTCP(t *testing.T) {
	withLoops(t, func(ls *Loops) { checkPipeSplice(t, ls) })
}

func TestLoopClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ls := newTestLoops(t)
	lb := sockiotest.NewPairs(t)
	rigs := openIdleRigs(t, lb, ls, 10)
	ls.Close()
	ls.Close()
	for _, r := range rigs {
		if res := r.wait(t); res.err != errLoopClosed {
			t.Errorf("result %v, want errLoopClosed", res.err)
		}
		r.client.SetReadDeadline(time.Now().Add(spliceBound))
		if _, err := r.client.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("client read %v, want EOF", err)
		}
		r.close()
	}
	r := startSplice(t, lb, ls, nil)
	defer r.close()
	if res := r.wait(t); res.err != errLoopClosed {
		t.Errorf("a session started after Close ended with %v", res.err)
	}
}

// TestLoopSessionSize keeps an idle loop session small: its struct is all it
// holds besides its two descriptors (and 8 bytes of its loop's table).
func TestLoopSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(lsess{}); n > 160 {
		t.Errorf("lsess is %d bytes, want at most 160 (a malloc size class)", n)
	} else {
		t.Logf("lsess: %d bytes", n)
	}
}

// TestLoopArmNeverInThePast: when the loop parks with its sweep already due
// (a sweep that took longer than its period), turn still runs before the
// read deadline ends Read; a deadline set in the past would end every Read
// before turn, and the loop would sweep forever without handling events.
func TestLoopArmNeverInThePast(t *testing.T) {
	ls := newTestLoops(t)
	defer ls.Close()
	l, err := newLoop(ls)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		l.epfile.Close()
		unix.Close(l.evfd)
	}()
	l.now = l.clock()
	l.nextSweep = l.now - int64(time.Second)
	if err := l.arm(); err != nil {
		t.Fatal(err)
	}
	calls := 0
	start := time.Now()
	err = l.rc.Read(func(uintptr) bool { calls++; return false })
	if !errors.Is(err, os.ErrDeadlineExceeded) || calls == 0 {
		t.Errorf("Read = %v after %d calls; want the deadline after at least one", err, calls)
	}
	if d := time.Since(start); d > spliceBound {
		t.Errorf("the deadline came after %v", d)
	}
}
