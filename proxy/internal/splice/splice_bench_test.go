//go:build !race

package splice

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/tether-lb/tether/proxy/internal/sockio/sockiotest"
	"go.uber.org/goleak"
)

// The zero-allocation proofs and the idle footprint live here, beside the
// benchmarks: the race detector allocates and grows stacks on its own, so
// none of them runs under -race.

func TestSpliceEchoAllocs(t *testing.T) {
	lb := sockiotest.NewPairs(t)
	client, stop := spliceEcho(t, lb, func(s *Session) {
		s.IdleTimeout = time.Minute
		s.WriteTimeout = time.Minute
	})
	defer stop()
	roundTrip := echoRoundTrip(t, client, 256)
	for range 100 { // fill the buffer pool
		roundTrip()
	}
	if n := testing.AllocsPerRun(500, roundTrip); n != 0 {
		t.Errorf("a spliced echo round trip allocates %v times, want 0", n)
	}
}

// echoRoundTrip returns a function that writes one size-byte message to c
// and reads its echo, failing t on an error.
func echoRoundTrip(t testing.TB, c net.Conn, size int) func() {
	msg, got := make([]byte, size), make([]byte, size)
	return func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
	}
}

// echoNode is the benchmarks' node: it echoes with a buffer of its own (no
// ReadFrom, no kernel splice), so it costs the same with or without tether
// in between.
func echoNode(c net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			c.Close()
			return
		}
	}
}

// sinkNode reads c to EOF, discarding, and reports how much it read.
func sinkNode(c net.Conn, total chan<- int64) {
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, err := c.Read(buf)
		n += int64(k)
		if err != nil {
			c.Close()
			total <- n
			return
		}
	}
}

// spliceEcho connects a client to an echo node through the goroutine splicer.
// stop ends the session and waits for it.
func spliceEcho(t testing.TB, lb *sockiotest.Pairs, tweak func(*Session)) (client *net.TCPConn, stop func()) {
	r := startSplice(t, lb, testSplicer(), func(s *Session, _ *rig) {
		if tweak != nil {
			tweak(s)
		}
	})
	go echoNode(r.node)
	return r.client, func() {
		r.client.Close()
		r.wait(t)
	}
}

// directEcho connects a client straight to an echo node: the baseline.
func directEcho(t testing.TB, lb *sockiotest.Pairs) (client *net.TCPConn, stop func()) {
	client, node := lb.Pair(t)
	go echoNode(node)
	return client, func() { client.Close() }
}

// TestSpliceIdleFootprint measures what an idle session costs: goroutine
// stacks and heap per session (logged) and descriptors (checked).
func TestSpliceIdleFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,000 sessions (8,000 descriptors)")
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const sessions = 2000
	lb := sockiotest.NewPairs(t)
	sp := testSplicer()

	// Connect everything first, so the deltas below are the splices alone.
	type ends struct{ client, proxyClient, proxyNode, node *net.TCPConn }
	conns := make([]ends, sessions)
	for i := range conns {
		c := &conns[i]
		c.client, c.proxyClient = lb.Pair(t)
		c.proxyNode, c.node = lb.Pair(t)
	}
	t.Cleanup(func() { // on failure: end every session, free the descriptors
		for _, c := range conns {
			c.client.Close()
			c.node.Close()
		}
	})
	rigs := make([]*rig, sessions)
	var before, after runtime.MemStats
	fds0, _ := settledFDs(t)
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()

	for i, c := range conns {
		r := &rig{client: c.client, node: c.node, proxyClient: c.proxyClient, done: make(chan spliceResult, 1)}
		go runSplice(sp, &Session{Client: c.proxyClient, Node: c.proxyNode}, r.done)
		rigs[i] = r
	}
	for _, r := range rigs {
		r.pingPong(t)
	}
	waitNoBufs(t)
	runtime.GC()
	runtime.GC() // and the pool's victim cache
	runtime.ReadMemStats(&after)
	goroutines := runtime.NumGoroutine() - g0
	fds1, _ := countFDs(t)

	stack := float64(after.StackInuse-before.StackInuse) / sessions
	heap := (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / sessions
	t.Logf("per idle session: %.0f B goroutine stacks (%d goroutines for %d sessions), %.0f B heap, %d descriptors beyond its 2 sockets, %d buffers held",
		stack, goroutines, sessions, heap, fds1-fds0, bufsOut.Load())
	if got := fds1 - fds0; got != 0 {
		t.Errorf("splices opened %d descriptors beyond their 2 sockets each", got)
	}
	if goroutines != 2*sessions {
		t.Errorf("%d goroutines for %d sessions, want 2 each", goroutines, sessions)
	}
	closeRigs(t, rigs)
}
