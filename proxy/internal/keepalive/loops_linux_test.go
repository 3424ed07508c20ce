//go:build linux

package keepalive

import (
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeConn is a Conn over one end of a socket pair: Serve reads what is
// there and parks again; the test writes to the other end.
type fakeConn struct {
	ls     *Loops
	place  Place
	fd     int
	served chan string // what each Serve read
	closed chan struct{}
	once   sync.Once
	expire atomic.Bool // Sweep says expired
	cools  atomic.Int32
	readIn func() // runs in Serve before it parks (nil: none)
	serves atomic.Int32
}

func newFakeConn(t *testing.T, ls *Loops) (*fakeConn, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[1]) })
	return &fakeConn{ls: ls, fd: fds[0], served: make(chan string, 16), closed: make(chan struct{})}, fds[1]
}

func (c *fakeConn) Place() *Place { return &c.place }

func (c *fakeConn) Socket() (int, syscall.RawConn) { return c.fd, nil }

func (c *fakeConn) Serve() {
	c.serves.Add(1)
	for {
		var b [64]byte
		n, _ := unix.Read(c.fd, b[:])
		if n <= 0 {
			c.Close()
			return
		}
		if c.readIn != nil {
			c.readIn()
		}
		c.served <- string(b[:n])
		if c.ls.Park(c, false) {
			return
		}
	}
}

func (c *fakeConn) Close() {
	c.once.Do(func() {
		c.place.Forget(c)
		unix.Close(c.fd)
		close(c.closed)
	})
}

func (c *fakeConn) Lost(error)    { c.Close() }
func (c *fakeConn) Refused(error) { c.Close() }
func (c *fakeConn) Cool()         { c.cools.Add(1) }

func (c *fakeConn) Sweep(now, since int64, draining bool) (expired, cool bool) {
	return c.expire.Load() || draining, false
}

func (c *fakeConn) ReadableNow() bool { return false }

func startLoops(t *testing.T) *Loops {
	t.Helper()
	ls, err := New(Options{Loops: 1, Tick: func(bool) time.Duration { return 10 * time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ls.Close)
	return ls
}

func waitServed(t *testing.T, c *fakeConn, want string) {
	t.Helper()
	select {
	case got := <-c.served:
		if got != want {
			t.Fatalf("served %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%q not served within 5s", want)
	}
}

func waitIdle(t *testing.T, c *fakeConn) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !c.place.Idle(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not idle on its loop within 5s")
		}
	}
}

// TestParkServeAgain: a parked connection is served on a worker when bytes
// arrive, as often as they do, and goes back idle in between; a cooled
// park asks the connection to cool.
func TestParkServeAgain(t *testing.T) {
	ls := startLoops(t)
	c, peer := newFakeConn(t, ls)
	if !ls.Park(c, true) {
		t.Fatal("Park of a quiet connection reported readiness")
	}
	if n := c.cools.Load(); n != 1 {
		t.Fatalf("%d cools, want 1", n)
	}
	for _, msg := range []string{"a", "b", "c"} {
		waitIdle(t, c)
		unix.Write(peer, []byte(msg))
		waitServed(t, c, msg)
	}
	if ls.Idle() > 1 {
		t.Fatalf("%d idle, want at most 1", ls.Idle())
	}
}

// TestReadinessWhileBusy: bytes that arrive while the connection is being
// served are not lost: the loop marks it ready, Park reports it and the
// same worker serves it again at once (an edge-triggered event is
// reported once).
func TestReadinessWhileBusy(t *testing.T) {
	ls := startLoops(t)
	c, peer := newFakeConn(t, ls)
	first := true
	c.readIn = func() {
		if !first {
			return
		}
		first = false // while busy with "a", "b" arrives
		unix.Write(peer, []byte("b"))
		for deadline := time.Now().Add(5 * time.Second); c.place.state.Load() != ready; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Error("the loop did not mark the busy connection ready within 5s")
				return
			}
		}
	}
	ls.Park(c, false)
	waitIdle(t, c)
	unix.Write(peer, []byte("a"))
	waitServed(t, c, "a")
	waitServed(t, c, "b")
	if n := c.serves.Load(); n != 1 {
		t.Fatalf("served in %d turns, want 1: the readiness seen while busy was not reported by Park", n)
	}
}

// TestSweepCloses: the sweep closes an idle connection its Sweep says has
// expired, and frees its slot.
func TestSweepCloses(t *testing.T) {
	ls := startLoops(t)
	c, _ := newFakeConn(t, ls)
	ls.Park(c, false)
	waitIdle(t, c)
	c.expire.Store(true)
	select {
	case <-c.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("not closed by the sweep within 5s")
	}
	if n := ls.Idle(); n != 0 {
		t.Fatalf("%d idle after the close, want 0", n)
	}
}

// TestTakeAndDrain: Take makes an idle connection the caller's and out of
// its loop (readiness no longer serves it); Drain closes the others.
func TestTakeAndDrain(t *testing.T) {
	ls := startLoops(t)
	taken, tpeer := newFakeConn(t, ls)
	kept, _ := newFakeConn(t, ls)
	ls.Park(taken, false)
	ls.Park(kept, false)
	waitIdle(t, taken)
	waitIdle(t, kept)
	if !ls.Take(taken) {
		t.Fatal("Take of an idle connection failed")
	}
	if ls.Take(taken) {
		t.Fatal("Take of a taken connection succeeded")
	}
	unix.Write(tpeer, []byte("x"))
	ls.Drain()
	select {
	case <-kept.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection was not closed by the drain within 5s")
	}
	select {
	case got := <-taken.served:
		t.Fatalf("a taken connection was served (%q)", got)
	case <-taken.closed:
		t.Fatal("a taken connection was closed by its loop")
	case <-time.After(100 * time.Millisecond):
	}
	taken.Close()
}

// TestCloseClosesIdle: Close ends the loops and closes what they hold; a
// connection parked after it is closed by Park.
func TestCloseClosesIdle(t *testing.T) {
	ls := startLoops(t)
	c, _ := newFakeConn(t, ls)
	ls.Park(c, false)
	waitIdle(t, c)
	ls.Close()
	select {
	case <-c.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("not closed by Close")
	}
	late, _ := newFakeConn(t, ls)
	ls.Park(late, false)
	select {
	case <-late.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("a connection parked after Close stays open")
	}
}
