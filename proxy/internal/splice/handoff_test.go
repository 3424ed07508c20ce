//go:build linux

package splice

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/sockio/sockiotest"
	"github.com/tether-lb/tether/proxy/internal/wire"
	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// Hand-over of loop sessions: Freeze, Adopt, Release and Thaw, within one
// process (two Loops stand for the two processes; dup stands for SCM_RIGHTS).

// handRig is a WebSocket session on a loop whose sockets toward the test's
// ends have small send buffers, so that bytes pend in the loop soon after
// an end stops reading.
type handRig struct {
	client, node *net.TCPConn
	done         chan spliceResult
	reg          *testRegistry
	e            pool.Evictor
}

func startHandRig(t *testing.T, ls *Loops) *handRig {
	t.Helper()
	lb := sockiotest.NewPairs(t)
	r := &handRig{done: make(chan spliceResult, 1), reg: newTestRegistry()}
	var pc, pn *net.TCPConn
	r.client, pc = lb.Pair(t)
	pn, r.node = lb.Pair(t)
	t.Cleanup(func() { r.client.Close(); r.node.Close() })
	for _, c := range []*net.TCPConn{pc, pn} {
		c.SetWriteBuffer(4 << 10)
	}
	for _, c := range []*net.TCPConn{r.client, r.node} {
		c.SetDeadline(time.Now().Add(spliceBound))
	}
	go runSplice(ls, &Session{Client: pc, Node: pn, WebSocket: true, Registry: r.reg}, r.done)
	select {
	case r.e = <-r.reg.added:
	case <-time.After(spliceBound):
		t.Fatal("session never registered")
	}
	return r
}

// waitBufs waits until n splice buffers are held by sessions: both
// directions of a session have bytes pending in the loop.
func waitBufs(t *testing.T, n int64) {
	t.Helper()
	for end := time.Now().Add(spliceBound); bufsOut.Load() < n; {
		if time.Now().After(end) {
			t.Fatalf("%d splice buffers held, want %d", bufsOut.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// writeAsync writes p to c and reports the error on the returned channel.
func writeAsync(c net.Conn, p []byte) <-chan error {
	ch := make(chan error, 1)
	go writeOnce(c, p, ch)
	return ch
}

// readAsync reads c to EOF and reports what came.
func readAsync(c net.Conn) <-chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		ch <- b
	}()
	return ch
}

func recvErr(t *testing.T, what string, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(spliceBound):
		t.Fatalf("%s: no end", what)
	}
}

func recvBytes(t *testing.T, what string, ch <-chan []byte) []byte {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(spliceBound):
		t.Fatalf("%s: no end", what)
		return nil
	}
}

func recvResult(t *testing.T, ch <-chan spliceResult) spliceResult {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(spliceBound):
		t.Fatal("session did not end")
		return spliceResult{}
	}
}

// freezeOne freezes ls's sessions, expecting exactly one.
func freezeOne(t *testing.T, ls *Loops) *Frozen {
	t.Helper()
	fs := ls.Freeze()
	if len(fs) != 1 {
		t.Fatalf("Freeze took %d sessions, want 1", len(fs))
	}
	return fs[0]
}

// dupFDs returns close-on-exec copies of f's descriptors, as another
// process receives them.
func dupFDs(t testing.TB, f *Frozen) (client, node int) {
	t.Helper()
	c, n := f.FDs()
	dc, err := unix.FcntlInt(uintptr(c), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	dn, err := unix.FcntlInt(uintptr(n), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		unix.Close(dc)
		t.Fatal(err)
	}
	return dc, dn
}

// overJSON sends m through JSON, as the hand-over does.
func overJSON(t *testing.T, m Moved) Moved {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var got Moved
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	return got
}

func randomBytes(rng *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p
}

// TestHandoffMidFrame freezes a WebSocket session inside a frame from the
// node with bytes pending in the loop both ways, and puts it on loops again:
// on a second Loops through copies of its descriptors (the original
// released, as across processes), or where it was (an aborted hand-over).
// Both streams go on byte-exact; the node then dies, and the client gets
// its 1012 Close after the frame the node had begun; the Ender's counts
// include the bytes moved before the freeze.
func TestHandoffMidFrame(t *testing.T) {
	for _, move := range []bool{true, false} {
		name := "to another Loops"
		if !move {
			name = "thawed where it was"
		}
		t.Run(name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			waitNoBufs(t)
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 5))
			from, to := newTestLoops(t), newTestLoops(t)
			defer from.Close()
			defer to.Close()
			r := startHandRig(t, from)

			up := randomBytes(rng, 512<<10)
			f1 := wiretest.Frame(true, 0x2, randomBytes(rng, 512<<10), false)
			f2 := wiretest.Frame(true, 0x1, []byte("after the hand-over"), false)
			cut := len(f1) - 1000 - rng.IntN(1000)
			upDone := writeAsync(r.client, up)
			downDone := writeAsync(r.node, f1[:cut])
			waitBufs(t, 2)

			f := freezeOne(t, from)
			m := f.Moved()
			if len(m.PendUp) == 0 || len(m.PendDown) == 0 || !m.WebSocket || m.WriteTimeout <= 0 {
				t.Fatalf("Moved has %d bytes pending up, %d down, ws %v, write timeout %v; want bytes both ways",
					len(m.PendUp), len(m.PendDown), m.WebSocket, m.WriteTimeout)
			}
			if m.ToNode+int64(len(m.PendUp)) > int64(len(up)) || m.ToClient+int64(len(m.PendDown)) > int64(cut) {
				t.Fatalf("Moved counts %d+%d up, %d+%d down: more than was sent", m.ToNode, len(m.PendUp), m.ToClient, len(m.PendDown))
			}
			var tr wire.FrameTracker
			if err := tr.UnmarshalBinary(m.Tracker); err != nil || tr.AtBoundary() {
				t.Fatalf("tracker state % x (%v): want inside the node's frame", m.Tracker, err)
			}

			ended := r.done
			if move {
				dc, dn := dupFDs(t, f)
				ended = make(chan spliceResult, 1)
				g, err := to.Adopt(dc, dn, overJSON(t, m), newTestRegistry(), EndFunc(func(toNode, toClient int64, err error) {
					ended <- spliceResult{toNode, toClient, err}
				}))
				if err != nil {
					unix.Close(dc)
					unix.Close(dn)
					t.Fatal(err)
				}
				from.Release([]*Frozen{f})
				if c, n := f.FDs(); c != -1 || n != -1 {
					t.Errorf("released session still has descriptors %d, %d", c, n)
				}
				if n := r.reg.count(); n != 0 {
					t.Errorf("%d sessions still registered where they were released", n)
				}
				to.Thaw([]*Frozen{g})
			} else {
				from.Thaw([]*Frozen{f})
			}

			gotDown := readAsync(r.client)
			gotUp := make([]byte, len(up))
			if _, err := io.ReadFull(r.node, gotUp); err != nil {
				t.Fatalf("node read: %v", err)
			}
			if !bytes.Equal(gotUp, up) {
				t.Fatal("client→node bytes differ after the hand-over")
			}
			recvErr(t, "client write", upDone)
			recvErr(t, "node write", downDone)
			if _, err := r.node.Write(append(f1[cut:len(f1):len(f1)], f2...)); err != nil {
				t.Fatal(err)
			}
			r.node.Close() // no Close frame: the node died

			want := append(append(append([]byte(nil), f1...), f2...), wire.CloseFrameFor(1012)...)
			if got := recvBytes(t, "client read", gotDown); !bytes.Equal(got, want) {
				t.Fatalf("client got %d bytes, want %d: the node's frames then Close 1012", len(got), len(want))
			}
			r.client.Close()
			res := recvResult(t, ended)
			var told *toldError
			if !errors.As(res.err, &told) || told.code != 1012 {
				t.Errorf("result %v, want told 1012", res.err)
			}
			if res.toNode != int64(len(up)) || res.toClient != int64(len(want)) {
				t.Errorf("Ender counts %d, %d; want %d, %d (bytes before the freeze included)", res.toNode, res.toClient, len(up), len(want))
			}
			if move {
				select {
				case res := <-r.done:
					t.Errorf("the released session's Ender was called: %+v", res)
				default:
				}
			}
			waitNoBufs(t)
		})
	}
}

// TestHandoffEvictWhileFrozen: an eviction that comes while the session is
// frozen (the node went down meanwhile) is applied at Thaw: the frame in
// flight finishes, then the Close.
func TestHandoffEvictWhileFrozen(t *testing.T) {
	withLoops(t, func(ls *Loops) {
		reg := newTestRegistry()
		r, e := startWSOn(t, ls, reg, nil)
		r.client.SetDeadline(time.Now().Add(spliceBound))
		r.node.SetDeadline(time.Now().Add(spliceBound))
		f1 := wiretest.Frame(true, 0x2, bytes.Repeat([]byte{0x82}, 20<<10), false)
		cut := len(f1) / 2
		r.node.Write(f1[:cut])
		expectRead(t, r.client, string(f1[:cut]))
		f := freezeOne(t, ls)

		evicted := make(chan struct{}, 1)
		testHookEvicted = func(ev pool.Evictor) {
			if ev == e {
				select {
				case evicted <- struct{}{}:
				default: // again at Thaw
				}
			}
		}
		defer func() { testHookEvicted = nil }()
		e.Evict(pool.CloseGoingAway)
		select {
		case <-evicted: // the loop took the command while the session was off it
		case <-time.After(spliceBound):
			t.Fatal("the loop did not take the Evict command")
		}
		ls.Thaw([]*Frozen{f})
		r.node.Write(f1[cut:])
		r.node.Write(wiretest.Frame(true, 0x1, []byte("late"), false))
		want := append(append([]byte(nil), f1[cut:]...), wire.CloseFrameFor(1001)...)
		if got := readAll(t, r.client); !bytes.Equal(got, want) {
			t.Fatalf("client got %d bytes, want %d: the frame's rest then Close 1001", len(got), len(want))
		}
		r.client.Close()
		var told *toldError
		if res := r.wait(t); !errors.As(res.err, &told) || told.code != 1001 || res.toClient != int64(len(f1)+len(wire.CloseFrameFor(1001))) {
			t.Fatalf("result %+v, want told 1001 after the frame and the Close", res)
		}
	})
}

// TestHandoffFreezesOnlyRunning: a session being evicted, half-closed or
// lingering after its Close stays on its loop and ends there as usual.
func TestHandoffFreezesOnlyRunning(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, r *rig, e pool.Evictor) // brings the session to its state
		end   func(t *testing.T, r *rig)                 // ends it
	}{
		{
			name: "evicted mid-frame",
			setup: func(t *testing.T, r *rig, e pool.Evictor) {
				frame := wiretest.Frame(true, 0x2, make([]byte, 1000), false)
				r.node.Write(frame[:100])
				expectRead(t, r.client, string(frame[:100]))
				evicted := make(chan struct{}, 1)
				testHookEvicted = func(pool.Evictor) { evicted <- struct{}{} }
				defer func() { testHookEvicted = nil }()
				e.Evict(pool.CloseServiceRestart)
				<-evicted
			},
			end: func(t *testing.T, r *rig) {
				frame := wiretest.Frame(true, 0x2, make([]byte, 1000), false)
				r.node.Write(frame[100:])
				want := append(frame[100:], wire.CloseFrameFor(1012)...)
				if got := readAll(t, r.client); !bytes.Equal(got, want) {
					t.Fatalf("client got % x, want the frame's rest and Close", got)
				}
				r.client.Close()
			},
		},
		{
			name: "client half-closed",
			setup: func(t *testing.T, r *rig, _ pool.Evictor) {
				r.client.CloseWrite()
				if b := readAll(t, r.node); len(b) != 0 {
					t.Fatalf("node read % x, want EOF", b)
				}
			},
			end: func(t *testing.T, r *rig) {
				r.node.Write(wiretest.Frame(true, 0x1, []byte("bye"), false))
				r.node.CloseWrite()
				readAll(t, r.client)
			},
		},
		{
			name: "told, lingering",
			setup: func(t *testing.T, r *rig, e pool.Evictor) {
				e.Evict(pool.CloseGoingAway)
				if got := readAll(t, r.client); !bytes.Equal(got, wire.CloseFrameFor(1001)) {
					t.Fatalf("client got % x, want Close 1001", got)
				}
			},
			end: func(t *testing.T, r *rig) { r.client.Close() },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			withLoops(t, func(ls *Loops) {
				reg := newTestRegistry()
				r, e := startWSOn(t, ls, reg, nil)
				r.client.SetDeadline(time.Now().Add(spliceBound))
				r.node.SetDeadline(time.Now().Add(spliceBound))
				tc.setup(t, r, e)
				if fs := ls.Freeze(); len(fs) != 0 {
					t.Fatalf("Freeze took %d sessions, want none", len(fs))
				}
				tc.end(t, r)
				r.wait(t)
			})
		})
	}
}

// TestHandoffReleaseSilent: Release closes this process's descriptors only;
// the peers see nothing while a copy is held elsewhere, whose owner goes on
// with the connections.
func TestHandoffReleaseSilent(t *testing.T) {
	withLoops(t, func(ls *Loops) {
		reg := newTestRegistry()
		r, _ := startWSOn(t, ls, reg, nil)
		r.pingPong(t)
		f := freezeOne(t, ls)
		dc, dn := dupFDs(t, f)
		ls.Release([]*Frozen{f})
		ls.Release([]*Frozen{f}) // spent: nothing
		conns := make([]net.Conn, 2)
		for i, fd := range [2]int{dc, dn} {
			file := os.NewFile(uintptr(fd), "moved")
			c, err := net.FileConn(file)
			file.Close()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(spliceBound))
			conns[i] = c
		}
		for i, peer := range [2]*net.TCPConn{r.client, r.node} {
			if _, err := conns[i].Write([]byte("still here")); err != nil {
				t.Fatalf("write through the copy: %v", err)
			}
			expectRead(t, peer, "still here") // not EOF: no FIN was sent
			peer.Write([]byte("to the copy"))
			expectRead(t, conns[i], "to the copy")
		}
		if n := reg.count(); n != 0 {
			t.Errorf("%d sessions registered after Release", n)
		}
		for i, peer := range [2]*net.TCPConn{r.client, r.node} {
			conns[i].Close()
			if b := readAll(t, peer); len(b) != 0 {
				t.Errorf("peer read % x, want EOF once the copy closed", b)
			}
		}
		select {
		case res := <-r.done:
			t.Errorf("the released session's Ender was called: %+v", res)
		default:
		}
	})
}

// TestHandoffThawAfterClose: a session thawed on closed loops ends at once,
// its Ender told errLoopClosed and its peers their connection's end.
func TestHandoffThawAfterClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ls := newTestLoops(t)
	reg := newTestRegistry()
	r, _ := startWSOn(t, ls, reg, nil)
	r.pingPong(t)
	f := freezeOne(t, ls)
	ls.Close()
	ls.Thaw([]*Frozen{f})
	if res := r.wait(t); res.err != errLoopClosed || res.toNode != 4 || res.toClient != 4 {
		t.Errorf("result %+v, want errLoopClosed after 4 bytes each way", res)
	}
	if b := readAll(t, r.client); len(b) != 0 {
		t.Errorf("client read % x, want EOF", b)
	}
	if n := reg.count(); n != 0 {
		t.Errorf("%d sessions registered", n)
	}
}

// TestHandoffAdoptRefuses: descriptors and state from another process are
// checked; a refusal leaves both descriptors open and the caller's.
func TestHandoffAdoptRefuses(t *testing.T) {
	withLoops(t, func(ls *Loops) {
		lb := sockiotest.NewPairs(t)
		tcpFD := func() int {
			a, b := lb.Pair(t)
			defer a.Close()
			defer b.Close()
			f, err := a.File()
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fd, err := unix.Dup(int(f.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			return fd
		}
		var fds []int
		defer func() {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}()
		keep := func(fd int) int { fds = append(fds, fd); return fd }
		client, node := keep(tcpFD()), keep(tcpFD())
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		keep(p[0])
		keep(p[1])
		us, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		keep(us[0])
		keep(us[1])
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		lf, err := ln.File()
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer lf.Close()
		listening := int(lf.Fd())
		var midHeader wire.FrameTracker
		midHeader.Advance([]byte{0x82, 0x7e})
		okTracker, _ := midHeader.MarshalBinary()

		ws := Moved{WebSocket: true, Tracker: okTracker}
		cases := []struct {
			name         string
			client, node int
			m            Moved
			done         Ender
		}{
			{"negative count", client, node, Moved{WebSocket: true, ToNode: -1}, nil},
			{"negative quiet", client, node, Moved{Quiet: -time.Second}, nil},
			{"negative idle timeout", client, node, Moved{IdleTimeout: -1}, nil},
			{"pending over the buffer", client, node, Moved{PendDown: make([]byte, defaultSpliceBuf+1)}, nil},
			{"bad tracker", client, node, Moved{WebSocket: true, Tracker: []byte{1, 0, 2, 0x82, 0x05, 0, 0, 0, 0, 0, 0, 0, 0}}, nil},
			{"tracker without WebSocket", client, node, Moved{Tracker: okTracker}, nil},
			{"a pipe", p[0], node, ws, nil},
			{"a unix socket", client, us[0], ws, nil},
			{"a listening socket", listening, node, ws, nil},
			{"one descriptor twice", client, client, ws, nil},
			{"no descriptor", -1, node, ws, nil},
			{"a closed descriptor", client, 1 << 20, ws, nil},
			{"no Ender", client, node, ws, nil},
		}
		ender := EndFunc(func(int64, int64, error) { t.Error("Ender of a refused session called") })
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				done := Ender(ender)
				if tc.name == "no Ender" {
					done = nil
				}
				if f, err := ls.Adopt(tc.client, tc.node, tc.m, nil, done); err == nil {
					t.Fatalf("Adopt accepted it: %+v", f.Moved())
				} else {
					t.Log(err)
				}
				for _, fd := range fds {
					if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
						t.Fatalf("descriptor %d closed by a refused Adopt: %v", fd, err)
					}
				}
			})
		}
		// The same descriptors and state are accepted, and released unharmed.
		f, err := ls.Adopt(client, node, ws, nil, ender)
		if err != nil {
			t.Fatal(err)
		}
		fds = fds[2:]
		ls.Release([]*Frozen{f})
	})
}

// TestHandoffMany freezes hundreds of sessions at once, moves them to other
// loops and checks each still carries bytes both ways.
func TestHandoffMany(t *testing.T) {
	const sessions = 200
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	from, err := NewLoops(2, 0, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer from.Close()
	to := newTestLoops(t)
	defer to.Close()
	rigs := openIdleRigs(t, sockiotest.NewPairs(t), from, sessions)
	defer func() {
		for _, r := range rigs {
			r.close()
		}
	}()
	moveAll(t, from, to, sessions)
	for _, r := range rigs {
		r.pingPong(t)
	}
	moveAll(t, to, from, sessions)
	for _, r := range rigs {
		r.pingPong(t)
	}
}

// moveAll freezes every session of from and moves it to to, failing t
// unless there were n.
func moveAll(t testing.TB, from, to *Loops, n int) {
	t.Helper()
	fs := from.Freeze()
	if len(fs) != n {
		t.Fatalf("Freeze took %d sessions, want %d", len(fs), n)
	}
	gs := make([]*Frozen, len(fs))
	for i, f := range fs {
		c, n := dupFDs(t, f)
		g, err := to.Adopt(c, n, f.Moved(), nil, f.Ender())
		if err != nil {
			t.Fatal(err)
		}
		gs[i] = g
	}
	from.Release(fs)
	to.Thaw(gs)
}

// TestHandoffQuietCarried: the idle clock goes on from Moved.Quiet: a
// session that had been quiet for its whole idle timeout in the process it
// came from ends at the first sweep after Thaw, not a full timeout later.
func TestHandoffQuietCarried(t *testing.T) {
	const idle = 6 * time.Second
	withLoops(t, func(ls *Loops) {
		reg := newTestRegistry()
		r, _ := startWSOn(t, ls, reg, func(s *Session) { s.IdleTimeout = idle })
		r.client.SetDeadline(time.Now().Add(spliceBound))
		hi := wiretest.Frame(true, 0x1, []byte("hi"), false)
		r.node.Write(hi)
		expectRead(t, r.client, string(hi)) // the session is on its loop
		f := freezeOne(t, ls)
		m := f.Moved()
		if m.IdleTimeout != idle || m.Quiet < 0 || m.Quiet >= idle {
			t.Fatalf("Moved idle timeout %v, quiet %v; want %v and less", m.IdleTimeout, m.Quiet, idle)
		}
		m.Quiet = idle
		c, n := dupFDs(t, f)
		ended := make(chan spliceResult, 1)
		g, err := ls.Adopt(c, n, m, nil, EndFunc(func(toNode, toClient int64, err error) {
			ended <- spliceResult{toNode, toClient, err}
		}))
		if err != nil {
			t.Fatal(err)
		}
		ls.Release([]*Frozen{f})
		start := time.Now()
		ls.Thaw([]*Frozen{g})
		res := recvResult(t, ended)
		if d := time.Since(start); !errors.Is(res.err, errSpliceIdle) || d >= idle/2 {
			t.Errorf("ended with %v %v after Thaw; want errSpliceIdle at the next sweep (%v)", res.err, d, maxSweep)
		}
	})
}

// TestHandoffAdoptRegistersAtThaw: an adopted session registers with its
// node only at Thaw; a node that is down by then tells it 1012 at once.
func TestHandoffAdoptRegistersAtThaw(t *testing.T) {
	withLoops(t, func(ls *Loops) {
		r, _ := startWSOn(t, ls, newTestRegistry(), nil)
		r.client.SetDeadline(time.Now().Add(spliceBound))
		r.node.SetDeadline(time.Now().Add(spliceBound))
		hello := wiretest.Frame(true, 0x1, []byte("hello"), false)
		r.node.Write(hello)
		expectRead(t, r.client, string(hello))
		f := freezeOne(t, ls)
		c, n := dupFDs(t, f)
		reg := &evictingRegistry{newTestRegistry()}
		ended := make(chan spliceResult, 1)
		g, err := ls.Adopt(c, n, overJSON(t, f.Moved()), reg, EndFunc(func(toNode, toClient int64, err error) {
			ended <- spliceResult{toNode, toClient, err}
		}))
		if err != nil {
			t.Fatal(err)
		}
		ls.Release([]*Frozen{f})
		if k := reg.count(); k != 0 {
			t.Fatalf("%d sessions registered before Thaw", k)
		}
		ls.Thaw([]*Frozen{g})
		if got := readAll(t, r.client); !bytes.Equal(got, wire.CloseFrameFor(1012)) {
			t.Fatalf("client got % x, want the 1012 Close", got)
		}
		if b := readAll(t, r.node); len(b) != 0 {
			t.Fatalf("node read % x, want EOF", b)
		}
		r.client.Close()
		res := recvResult(t, ended)
		var told *toldError
		if !errors.As(res.err, &told) || told.code != 1012 || res.toClient != int64(len(hello)+len(wire.CloseFrameFor(1012))) {
			t.Errorf("result %+v, want told 1012 after the frame and the Close", res)
		}
		if k := reg.count(); k != 0 {
			t.Errorf("%d sessions registered after the end", k)
		}
	})
}

// gatedWrite writes chunks to c, each after a token from gate, then after
// one more token half-closes c; it reports the sha256 of what it wrote.
func gatedWrite(c *net.TCPConn, chunks [][]byte, gate <-chan struct{}, f *hashFlow) {
	h := sha256.New()
	for _, p := range chunks {
		<-gate
		h.Write(p)
		if _, err := c.Write(p); err != nil {
			f.sent <- [32]byte{}
			f.errs <- err
			return
		}
	}
	<-gate
	var s [32]byte
	h.Sum(s[:0])
	f.sent <- s
	f.errs <- c.CloseWrite()
}

// TestHandoffUnderTraffic moves a session back and forth between two Loops,
// and freezes and thaws it in place, a hundred times while bytes stream
// both ways (some read and pending in the loop, some queued or busy on
// its ready list): each stream arrives whole and in order, and the Ender
// counts every byte.
func TestHandoffUnderTraffic(t *testing.T) {
	const rounds = 100
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 9))
	// Small buffers: a burst takes a session past pumpTurn reads, onto its
	// loop's ready list, where a Freeze may find it.
	var loops [2]*Loops
	for i := range loops {
		ls, err := NewLoops(2, 4<<10, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer ls.Close()
		loops[i] = ls
	}
	a, b := loops[0], loops[1]
	r := startSplice(t, sockiotest.NewPairs(t), a, nil)
	defer r.close()
	r.pingPong(t) // the session is on its loop; 4 bytes each way
	chunks := func() ([][]byte, int) {
		var cs [][]byte
		total := 0
		for range rounds {
			p := randomBytes(rng, rng.IntN(256<<10))
			cs = append(cs, p)
			total += len(p)
		}
		return cs, total
	}
	upChunks, upTotal := chunks()
	downChunks, downTotal := chunks()
	up, down := newHashFlow(), newHashFlow()
	upGate, downGate := make(chan struct{}), make(chan struct{})
	go gatedWrite(r.client, upChunks, upGate, up)
	go hashToEOF(r.node, up.got, up.count, up.errs)
	go gatedWrite(r.node, downChunks, downGate, down)
	go hashToEOF(r.client, down.got, down.count, down.errs)
	gates := func() {
		for _, g := range []chan struct{}{upGate, downGate} {
			select {
			case g <- struct{}{}:
			case <-time.After(spliceBound):
				t.Fatal("a writer is stuck")
			}
		}
	}
	cur, other := a, b
	for i := range rounds {
		gates()
		if i%2 == 0 {
			moveAll(t, cur, other, 1)
			cur, other = other, cur
		} else {
			cur.Thaw([]*Frozen{freezeOne(t, cur)})
		}
	}
	gates()
	up.check(t, "client→node", upTotal)
	down.check(t, "node→client", downTotal)
	if res := r.wait(t); res.err != nil || res.toNode != int64(4+upTotal) || res.toClient != int64(4+downTotal) {
		t.Errorf("Ender got %+v, want %d, %d, nil", res, 4+upTotal, 4+downTotal)
	}
}

// TestFreezeLeavesReadyList: a session frozen while it waits on its loop's
// ready list (it used its turn with bytes still to read) leaves the list,
// so the loop never pumps a session it no longer holds. The loop is driven
// by hand, without its goroutine.
func TestFreezeLeavesReadyList(t *testing.T) {
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
	lb := sockiotest.NewPairs(t)
	client, pc := lb.Pair(t)
	defer client.Close()
	pn, node := lb.Pair(t)
	defer node.Close()
	s := &lsess{l: l, wt: spliceBound, fds: [2]int32{-1, -1},
		done: EndFunc(func(int64, int64, error) { t.Error("Ender called") })}
	if err := s.detach(pc, pn); err != nil {
		t.Fatal(err)
	}
	l.now = l.clock()
	l.add(s)
	l.queue(s)
	fz := &freezing{done: make(chan struct{})}
	l.freeze(fz)
	if len(fz.out) != 1 || len(l.ready) != 0 || s.flags&(flagQueued|flagAdded) != 0 {
		t.Fatalf("froze %d sessions, %d left on the ready list, flags %#x", len(fz.out), len(l.ready), s.flags)
	}
	ls.Release(fz.out)
}
