package splice

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/proxy/internal/sockio/sockiotest"
	"go.uber.org/goleak"
)

// spliceBound bounds every wait in these tests; nothing should come near it.
const spliceBound = 20 * time.Second

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
func startSplice(t testing.TB, lb *sockiotest.Pairs, sp Engine, tweak func(*Session, *rig)) *rig {
	t.Helper()
	r := &rig{done: make(chan spliceResult, 1)}
	var pn *net.TCPConn
	r.client, r.proxyClient = lb.Pair(t)
	pn, r.node = lb.Pair(t)
	sess := &Session{Client: r.proxyClient, Node: pn}
	if tweak != nil {
		tweak(sess, r)
	}
	go runSplice(sp, sess, r.done)
	return r
}

// runSplice starts a session and reports its end on done.
func runSplice(sp Engine, sess *Session, done chan<- spliceResult) {
	sp.Start(sess, EndFunc(func(toNode, toClient int64, err error) {
		done <- spliceResult{toNode, toClient, err}
	}))
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

func testSplicer() Engine {
	return NewGo(0, zerolog.Nop())
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

// settledFDs is countFDs once the count holds still for 20 ms (at most 2 s):
// descriptors of earlier tests may still be closing.
func settledFDs(t testing.TB) (fds, pipes int) {
	t.Helper()
	// Pipes that Go's splice (io.Copy between TCP conns) keeps in a pool are
	// closed by finalizers after the pool drops them: two collections to
	// drop them, a third to run the finalizers.
	for range 3 {
		runtime.GC()
	}
	fds, pipes = countFDs(t)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		f, p := countFDs(t)
		if f == fds && p == pipes {
			break
		}
		fds, pipes = f, p
	}
	return fds, pipes
}

// checkFDsBack fails t unless the descriptor count comes back to at most
// want within 2 s (fewer: an earlier test's descriptor closed meanwhile).
func checkFDsBack(t testing.TB, want int) {
	t.Helper()
	got, _ := countFDs(t)
	for deadline := time.Now().Add(2 * time.Second); got > want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		got, _ = countFDs(t)
	}
	if got > want {
		t.Errorf("descriptors %d after all sessions ended, want %d", got, want)
	}
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
	for end := time.Now().Add(spliceBound); bufsOut.Load() != 0; {
		if time.Now().After(end) {
			t.Fatalf("%d splice buffers still borrowed by idle sessions", bufsOut.Load())
		}
		runtime.Gosched()
	}
}

// openIdleRigs starts n sessions and moves one message each way through each.
func openIdleRigs(t testing.TB, lb *sockiotest.Pairs, sp Engine, n int) []*rig {
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
	lb := sockiotest.NewPairs(t)
	sp := testSplicer()
	fds0, pipes0 := settledFDs(t)

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
	if n := bufsOut.Load(); n != 0 {
		t.Errorf("%d buffers held by %d idle sessions", n, sessions)
	}

	closeRigs(t, rigs)
	checkFDsBack(t, fds0)
}

func TestSpliceNonSyscallConn(t *testing.T) { checkPipeSplice(t, testSplicer()) }

// checkPipeSplice splices two net.Pipe ends (no descriptor to wait on)
// through sp: the prefix and the bytes after it arrive, and closing both
// peers ends the session cleanly.
func checkPipeSplice(t *testing.T, sp Engine) {
	t.Helper()
	client, proxyClient := net.Pipe()
	proxyNode, node := net.Pipe()
	done := make(chan spliceResult, 1)
	go runSplice(sp, &Session{Client: proxyClient, Node: proxyNode, NodeBuf: []byte("hi ")}, done)
	client.SetDeadline(time.Now().Add(spliceBound))
	node.SetDeadline(time.Now().Add(spliceBound))
	go node.Write([]byte("there"))
	got := make([]byte, 8)
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "hi there" {
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
