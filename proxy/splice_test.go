package proxy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

// spliceBound bounds every wait in these tests; nothing should come near it.
const spliceBound = 20 * time.Second

// pairMaker hands out connected TCP pairs on 127.0.0.1.
type pairMaker struct {
	ln *net.TCPListener
}

func newPairMaker(t testing.TB) *pairMaker {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &pairMaker{ln: ln}
}

// pair returns both ends of one connection.
func (l *pairMaker) pair(t testing.TB) (dialed, accepted *net.TCPConn) {
	t.Helper()
	d, err := net.DialTCP("tcp", nil, l.ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.ln.AcceptTCP()
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	return d, a
}

type spliceResult struct {
	toNode, toClient int64
	err              error
}

// rig is one spliced session seen from its ends: client is the test's client
// socket, node the test's node socket; the splicer holds the other two ends.
type rig struct {
	client, node *net.TCPConn
	proxyClient  *net.TCPConn // the splicer's client-side conn
	done         chan spliceResult
}

// startSplice connects a client and a node through sp. tweak may adjust the
// session before Splice starts.
func startSplice(t testing.TB, lb *pairMaker, sp Splicer, tweak func(*Session, *rig)) *rig {
	t.Helper()
	r := &rig{done: make(chan spliceResult, 1)}
	var pn *net.TCPConn
	r.client, r.proxyClient = lb.pair(t)
	pn, r.node = lb.pair(t)
	sess := &Session{Client: r.proxyClient, Node: pn}
	if tweak != nil {
		tweak(sess, r)
	}
	go runSplice(sp, sess, r.done)
	return r
}

// runSplice starts a session and reports its end on done.
func runSplice(sp Splicer, sess *Session, done chan<- spliceResult) {
	sp.Start(sess, func(toNode, toClient int64, err error) {
		done <- spliceResult{toNode, toClient, err}
	})
}

// wait returns the session's result, failing the test if it does not end.
func (r *rig) wait(t testing.TB) spliceResult {
	t.Helper()
	select {
	case res := <-r.done:
		return res
	case <-time.After(spliceBound):
		t.Fatal("splice did not end")
		return spliceResult{}
	}
}

func (r *rig) close() {
	r.client.Close()
	r.node.Close()
}

func testSplicer() Splicer {
	return NewGoSplicer(0, zerolog.Nop())
}

// writeSplit writes n random bytes to c in random-sized writes, then
// half-closes c, and sends the sha256 of what it wrote.
func writeSplit(c *net.TCPConn, n int, seed uint64, sum chan<- [32]byte, errs chan<- error) {
	rng := rand.New(rand.NewPCG(seed, 1))
	h := sha256.New()
	buf := make([]byte, 1<<17)
	for n > 0 {
		k := 1 + rng.IntN(min(n, len(buf)))
		if rng.IntN(4) == 0 {
			k = 1 + rng.IntN(min(n, 64))
		}
		chunk := buf[:k]
		for i := range chunk {
			chunk[i] = byte(rng.Uint32())
		}
		h.Write(chunk)
		if _, err := c.Write(chunk); err != nil {
			errs <- err
			return
		}
		n -= k
	}
	var s [32]byte
	h.Sum(s[:0])
	sum <- s
	errs <- c.CloseWrite()
}

// hashToEOF reads c to EOF and sends the sha256 and count of what it read.
func hashToEOF(c net.Conn, sum chan<- [32]byte, count chan<- int64, errs chan<- error) {
	h := sha256.New()
	n, err := io.Copy(h, c)
	var s [32]byte
	h.Sum(s[:0])
	sum <- s
	count <- n
	errs <- err
}

// hashFlow collects what writeSplit and hashToEOF report for one direction.
type hashFlow struct {
	sent, got chan [32]byte
	count     chan int64
	errs      chan error
}

func newHashFlow() *hashFlow {
	return &hashFlow{make(chan [32]byte, 1), make(chan [32]byte, 1), make(chan int64, 1), make(chan error, 2)}
}

func (f *hashFlow) check(t *testing.T, dir string, want int) {
	t.Helper()
	for range 2 {
		if err := <-f.errs; err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
	}
	sent, got, n := <-f.sent, <-f.got, <-f.count
	if n != int64(want) || sent != got {
		t.Errorf("%s: got %d bytes, want %d; hashes match: %v", dir, n, want, sent == got)
	}
}

func TestSpliceTransparent(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
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
	lb := newPairMaker(t)
	sp := testSplicer()
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
}

func TestSplicePrefix(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	lb := newPairMaker(t)
	var released atomic.Int32
	r := startSplice(t, lb, testSplicer(), func(s *Session, _ *rig) {
		s.ClientBuf = []byte("GET-rest|")
		s.NodeBuf = []byte("101-rest|")
		s.Release = func() { released.Add(1) }
	})
	defer r.close()
	r.client.SetDeadline(time.Now().Add(spliceBound))
	r.node.SetDeadline(time.Now().Add(spliceBound))

	if _, err := r.client.Write([]byte("from client")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.node.Write([]byte("from node")); err != nil {
		t.Fatal(err)
	}
	expect := func(c net.Conn, want string) {
		t.Helper()
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("read %q, want %q", got, want)
		}
	}
	expect(r.node, "GET-rest|from client")
	expect(r.client, "101-rest|from node")
	if n := released.Load(); n != 1 {
		t.Errorf("Release called %d times while the session runs, want 1", n)
	}
	r.close()
	res := r.wait(t)
	if res.toNode != 20 || res.toClient != 18 {
		t.Errorf("counts %d, %d; want 20, 18", res.toNode, res.toClient)
	}
	if n := released.Load(); n != 1 {
		t.Errorf("Release called %d times, want 1", n)
	}
}

func TestSpliceHalfClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	lb := newPairMaker(t)
	sp := testSplicer()
	cases := []struct {
		name string
		// first half-closes first; the other side must still talk to it.
		first, other func(*rig) *net.TCPConn
	}{
		{"client first", (*rig).clientEnd, (*rig).nodeEnd},
		{"node first", (*rig).nodeEnd, (*rig).clientEnd},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := startSplice(t, lb, sp, nil)
			defer r.close()
			r.client.SetDeadline(time.Now().Add(spliceBound))
			r.node.SetDeadline(time.Now().Add(spliceBound))
			first, other := tc.first(r), tc.other(r)

			if _, err := first.Write([]byte("last words")); err != nil {
				t.Fatal(err)
			}
			if err := first.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(other) // ends at the forwarded EOF
			if err != nil || string(got) != "last words" {
				t.Fatalf("other side read %q, %v; want the bytes then EOF", got, err)
			}
			// The other direction still flows, both ways of half-closing.
			for _, msg := range []string{"still", " flowing"} {
				if _, err := other.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, len(msg))
				if _, err := io.ReadFull(first, buf); err != nil || string(buf) != msg {
					t.Fatalf("half-closed side read %q, %v; want %q", buf, err, msg)
				}
			}
			select {
			case res := <-r.done:
				t.Fatalf("session ended after one half-close: %+v", res)
			default:
			}
			if err := other.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if got, err := io.ReadAll(first); err != nil || len(got) != 0 {
				t.Fatalf("half-closed side read %q, %v; want EOF", got, err)
			}
			if res := r.wait(t); res.err != nil || res.toNode+res.toClient != int64(len("last words")+len("still flowing")) {
				t.Errorf("Splice = %+v", res)
			}
		})
	}
}

func (r *rig) clientEnd() *net.TCPConn { return r.client }
func (r *rig) nodeEnd() *net.TCPConn   { return r.node }

func writeOnce(c net.Conn, b []byte, done chan<- error) {
	_, err := c.Write(b)
	done <- err
}

// streamUntilError writes to c until a write fails (the splice closed it).
func streamUntilError(c net.Conn, done chan<- error) {
	buf := make([]byte, 16<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			done <- err
			return
		}
	}
}

func TestSpliceResetMidStream(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	lb := newPairMaker(t)
	r := startSplice(t, lb, testSplicer(), nil)
	defer r.close()
	r.client.SetDeadline(time.Now().Add(spliceBound))
	r.node.SetDeadline(time.Now().Add(spliceBound))

	streamErr := make(chan error, 1)
	go streamUntilError(r.node, streamErr)
	if _, err := io.ReadFull(r.client, make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	r.client.SetLinger(0) // Close sends RST
	r.client.Close()

	res := r.wait(t)
	if res.err != nil {
		t.Errorf("a reset is a normal end, got %v", res.err)
	}
	if err := <-streamErr; err == nil {
		t.Error("node kept writing into a closed session")
	}
	if _, err := r.node.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("node read after the session ended: %v; want EOF or reset", err)
	}
}

func TestSpliceIdleTimeout(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const idle = 250 * time.Millisecond
	lb := newPairMaker(t)
	sp := testSplicer()
	idleSession := func(s *Session, _ *rig) { s.IdleTimeout = idle }

	t.Run("idle from the start", func(t *testing.T) {
		start := time.Now()
		r := startSplice(t, lb, sp, idleSession)
		defer r.close()
		res := r.wait(t)
		if !errors.Is(res.err, errSpliceIdle) {
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
		r := startSplice(t, lb, sp, idleSession)
		defer r.close()
		r.client.SetDeadline(time.Now().Add(spliceBound))
		b := make([]byte, 1)
		for end := time.Now().Add(4 * idle); time.Now().Before(end); {
			time.Sleep(idle / 5)
			if _, err := r.node.Write([]byte{'x'}); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(r.client, b); err != nil {
				t.Fatalf("session ended while node→client traffic flowed: %v", err)
			}
		}
		stopped := time.Now()
		res := r.wait(t)
		if !errors.Is(res.err, errSpliceIdle) {
			t.Errorf("err %v, want errSpliceIdle", res.err)
		}
		if d := time.Since(stopped); d < idle*3/4 {
			t.Errorf("ended %v after the last byte, want about %v", d, idle)
		}
	})

	t.Run("a slow reader is not idle", func(t *testing.T) {
		const size = 4 << 20
		r := startSplice(t, lb, sp, func(s *Session, r *rig) {
			s.IdleTimeout = idle
			s.WriteTimeout = spliceBound
			// A small send buffer, so the write stalls soon. (Shrinking the
			// client's receive buffer after the handshake can stall loopback
			// TCP on zero-window probes for seconds.)
			r.proxyClient.SetWriteBuffer(4 << 10)
		})
		defer r.close()
		r.client.SetDeadline(time.Now().Add(spliceBound))
		r.node.SetDeadline(time.Now().Add(spliceBound))
		wrote := make(chan error, 1)
		go writeOnce(r.node, make([]byte, size), wrote)
		// The splice's write to the client stalls for longer than the idle
		// timeout while nothing is read; then the client drains it all.
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
}

func TestSpliceWriteTimeout(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	lb := newPairMaker(t)
	r := startSplice(t, lb, testSplicer(), func(s *Session, r *rig) {
		s.WriteTimeout = 200 * time.Millisecond
		// A small send buffer, so a client that stops reading stalls the
		// splice's writes quickly.
		r.proxyClient.SetWriteBuffer(4 << 10)
	})
	defer r.close()
	r.node.SetDeadline(time.Now().Add(spliceBound))

	streamErr := make(chan error, 1)
	go streamUntilError(r.node, streamErr) // the client never reads
	res := r.wait(t)
	if !errors.Is(res.err, os.ErrDeadlineExceeded) || !strings.Contains(res.err.Error(), "to client") {
		t.Errorf("err %v, want a write timeout to the client", res.err)
	}
	if err := <-streamErr; errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("node writes only stopped at the test bound: %v", err)
	}
}

// countFDs returns the number of open descriptors and how many are pipes.
func countFDs(t testing.TB) (fds, pipes int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			pipes++
		}
	}
	return len(ents), pipes
}

// pingPong moves one message each way through r, so both copiers have run.
func (r *rig) pingPong(t testing.TB) {
	t.Helper()
	r.client.SetDeadline(time.Now().Add(spliceBound))
	r.node.SetDeadline(time.Now().Add(spliceBound))
	b := make([]byte, 4)
	for _, p := range [2][2]*net.TCPConn{{r.client, r.node}, {r.node, r.client}} {
		if _, err := p[0].Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(p[1], b); err != nil {
			t.Fatal(err)
		}
	}
}

// waitNoBufs waits until every borrowed splice buffer is back: a copier
// returns its buffer just after its write, which the peer may see first.
func waitNoBufs(t testing.TB) {
	t.Helper()
	for end := time.Now().Add(spliceBound); spliceBufsOut.Load() != 0; {
		if time.Now().After(end) {
			t.Fatalf("%d splice buffers still borrowed by idle sessions", spliceBufsOut.Load())
		}
		runtime.Gosched()
	}
}

// openIdleRigs starts n sessions and moves one message each way through each.
func openIdleRigs(t testing.TB, lb *pairMaker, sp Splicer, n int) []*rig {
	t.Helper()
	rigs := make([]*rig, n)
	for i := range rigs {
		rigs[i] = startSplice(t, lb, sp, nil)
	}
	for _, r := range rigs {
		r.pingPong(t)
	}
	return rigs
}

func closeRigs(t testing.TB, rigs []*rig) {
	t.Helper()
	for _, r := range rigs {
		r.close()
	}
	for _, r := range rigs {
		if res := r.wait(t); res.err != nil {
			t.Errorf("session ended with %v", res.err)
		}
	}
}

func TestSpliceIdleHoldsNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const sessions = 50
	lb := newPairMaker(t)
	sp := testSplicer()
	fds0, pipes0 := countFDs(t)

	rigs := openIdleRigs(t, lb, sp, sessions)
	waitNoBufs(t)
	fds1, pipes1 := countFDs(t)
	// Each session: the test's client and node sockets, and the two the
	// splice holds. Nothing else: no pipes.
	if got, want := fds1-fds0, 4*sessions; got != want {
		t.Errorf("descriptors grew by %d for %d sessions, want %d (2 per session plus 2 test peers)", got, sessions, want)
	}
	if pipes1 != pipes0 {
		t.Errorf("pipes grew from %d to %d", pipes0, pipes1)
	}
	if n := spliceBufsOut.Load(); n != 0 {
		t.Errorf("%d buffers held by %d idle sessions", n, sessions)
	}

	closeRigs(t, rigs)
	if fds2, _ := countFDs(t); fds2 != fds0 {
		t.Errorf("descriptors %d after all sessions ended, want %d", fds2, fds0)
	}
}

func TestSpliceNonSyscallConn(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	// net.Pipe conns have no descriptor: the splice still works, with reads
	// that block (as a *tls.Conn's do).
	client, proxyClient := net.Pipe()
	proxyNode, node := net.Pipe()
	done := make(chan spliceResult, 1)
	go runSplice(testSplicer(), &Session{Client: proxyClient, Node: proxyNode, NodeBuf: []byte("hi ")}, done)
	client.SetDeadline(time.Now().Add(spliceBound))
	node.SetDeadline(time.Now().Add(spliceBound))

	got := make([]byte, 8)
	go node.Write([]byte("there"))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, []byte("hi there")) {
		t.Fatalf("client read %q, %v", got, err)
	}
	client.Close()
	node.Close()
	select {
	case res := <-done:
		if res.err != nil {
			t.Errorf("Splice err %v", res.err)
		}
	case <-time.After(spliceBound):
		t.Fatal("splice did not end")
	}
}
