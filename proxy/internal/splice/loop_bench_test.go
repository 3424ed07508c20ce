//go:build linux && !race

package splice

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tether-lb/tether/internal/syscount"
	"github.com/tether-lb/tether/proxy/internal/sockio/sockiotest"
	"go.uber.org/goleak"
)

// The loop splicer's benchmarks beside the goroutine splicer and a direct
// connection, its zero-allocation proof and its idle footprint.

// echoThrough connects a client to an echo node through sp; stop ends the
// session and waits for it.
func echoThrough(t testing.TB, lb *sockiotest.Pairs, sp Engine) (client *net.TCPConn, stop func()) {
	r := startSplice(t, lb, sp, func(s *Session, _ *rig) {
		s.IdleTimeout = time.Minute
		s.WriteTimeout = time.Minute
	})
	go echoNode(r.node)
	return r.client, func() {
		r.client.Close()
		r.wait(t)
	}
}

// benchSplicers are the subjects of the loop benchmarks: nil is a direct
// connection. The loop splicer is closed by the benchmark's cleanup.
func benchSplicers(b *testing.B) []struct {
	name string
	sp   Engine
} {
	ls := newTestLoops(b)
	b.Cleanup(ls.Close)
	return []struct {
		name string
		sp   Engine
	}{{"direct", nil}, {"goroutine", testSplicer()}, {"loop", ls}}
}

func BenchmarkLoopSpliceEcho256(b *testing.B) {
	lb := sockiotest.NewPairs(b)
	for _, tc := range benchSplicers(b) {
		b.Run(tc.name, func(b *testing.B) {
			var client *net.TCPConn
			var stop func()
			if tc.sp == nil {
				client, stop = directEcho(b, lb)
			} else {
				client, stop = echoThrough(b, lb, tc.sp)
			}
			defer stop()
			msg := make([]byte, 256)
			got := make([]byte, 256)
			ls, _ := tc.sp.(*Loops)
			polls0 := loopPolls(ls)
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			sc := syscount.Start(b)
			for b.Loop() {
				if _, err := client.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(client, got); err != nil {
					b.Fatal(err)
				}
			}
			// The client's and the echo node's calls are in it: "direct" is
			// theirs alone.
			sc.Report(b)
			if ls != nil {
				// Two wake-ups per echo (client, then node, readable): 2 is
				// one epoll_wait per wake-up.
				b.ReportMetric(float64(loopPolls(ls)-polls0)/float64(b.N), "polls/op")
			}
		})
	}
}

// loopPolls is the epoll_wait calls of ls's loops so far; 0 for nil.
func loopPolls(ls *Loops) uint64 {
	var n uint64
	if ls != nil {
		for _, l := range ls.loops {
			n += l.polls.Load()
		}
	}
	return n
}

func BenchmarkLoopSpliceThroughput64K(b *testing.B) {
	lb := sockiotest.NewPairs(b)
	for _, tc := range benchSplicers(b) {
		b.Run(tc.name, func(b *testing.B) {
			var client, node *net.TCPConn
			var r *rig
			if tc.sp != nil {
				r = startSplice(b, lb, tc.sp, nil)
				client, node = r.client, r.node
			} else {
				client, node = lb.Pair(b)
			}
			total := make(chan int64, 1)
			go sinkNode(node, total)
			chunk := make([]byte, 64<<10)
			var sent int64
			b.ReportAllocs()
			b.SetBytes(int64(len(chunk)))
			for b.Loop() {
				n, err := client.Write(chunk)
				sent += int64(n)
				if err != nil {
					b.Fatal(err)
				}
			}
			client.CloseWrite()
			if got := <-total; got != sent {
				b.Fatalf("sink read %d bytes, sent %d", got, sent)
			}
			b.StopTimer()
			client.Close()
			if r != nil {
				r.wait(b)
			}
		})
	}
}

func TestLoopEchoAllocs(t *testing.T) {
	withLoops(t, func(ls *Loops) {
		client, stop := echoThrough(t, sockiotest.NewPairs(t), ls)
		defer stop()
		roundTrip := echoRoundTrip(t, client, 256)
		for range 100 {
			roundTrip()
		}
		// The loop's goroutine allocates too if at all: count the process.
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 1000 {
			roundTrip()
		}
		runtime.ReadMemStats(&after)
		if n := after.Mallocs - before.Mallocs; n > 10 {
			t.Errorf("1000 echo round trips through a loop allocated %d times, want 0", n)
		}
	})
}

// Footprint: the test process holds only tether's side of each session (the
// splicer's two descriptors); the client and node ends live in a child
// process (this test binary again, running TestLoopFootprintPeers), so 9,000
// sessions stay under the 20,000-descriptor limit in both processes.
//
//	TETHER_FOOTPRINT_SESSIONS=9000 go test ./proxy/ -run 'LoopIdleFootprint' -v

const (
	peersEnvAddr  = "TETHER_FOOTPRINT_PEERS"
	peersEnvCount = "TETHER_FOOTPRINT_COUNT"
	peersPrefix   = "peers: "
)

func TestLoopIdleFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a peer process and thousands of sessions")
	}
	sessions := 2000
	if v, err := strconv.Atoi(os.Getenv("TETHER_FOOTPRINT_SESSIONS")); err == nil && v > 0 {
		sessions = v
	}
	for _, eng := range spliceEngines {
		t.Run(eng.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			sp, stop := eng.open(t)
			defer stop()
			footprint(t, sp, sessions)
		})
	}
}

func footprint(t *testing.T, sp Engine, sessions int) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoopFootprintPeers$", "-test.count=1")
	cmd.Env = append(os.Environ(), peersEnvAddr+"="+ln.Addr().String(), peersEnvCount+"="+strconv.Itoa(sessions))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	lines := bufio.NewScanner(stdout)
	expect := func() string {
		for lines.Scan() {
			if s, ok := strings.CutPrefix(lines.Text(), peersPrefix); ok {
				return s
			}
		}
		t.Fatalf("peer process: %v", lines.Err())
		return ""
	}
	peerAddr := expect()

	var ended atomic.Int64
	done := EndFunc(func(int64, int64, error) { ended.Add(1) })
	fds0, _ := settledFDs(t)
	runtime.GC()
	debug.FreeOSMemory()
	rss0, ms0, g0 := rssBytes(t), memStats(), runtime.NumGoroutine()
	for range sessions {
		pc, err := ln.AcceptTCP()
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", peerAddr)
		if err != nil {
			t.Fatal(err)
		}
		sp.Start(&Session{Client: pc, Node: c.(*net.TCPConn)}, done)
	}
	fmt.Fprintln(stdin, "go") // one message each way through every session
	if s := expect(); s != "ok" {
		t.Fatalf("peer process: %s", s)
	}
	waitNoBufs(t)
	runtime.GC()
	debug.FreeOSMemory()
	rss1, ms1, g1 := rssBytes(t), memStats(), runtime.NumGoroutine()
	fds1, _ := countFDs(t)
	n := float64(sessions)
	t.Logf("%d idle sessions: RSS %.0f B/session (%.1f MiB total), heap %.0f B/session, stacks %.0f B/session, %.2f descriptors/session, %d goroutines more",
		sessions, float64(rss1-rss0)/n, float64(rss1)/(1<<20), float64(ms1.HeapAlloc-ms0.HeapAlloc)/n,
		float64(ms1.StackInuse-ms0.StackInuse)/n, float64(fds1-fds0)/n, g1-g0)
	if got := fds1 - fds0; got != 2*sessions {
		t.Errorf("%d descriptors for %d sessions, want 2 each", got, sessions)
	}
	fmt.Fprintln(stdin, "end") // the peers hang up: every session ends
	for end := time.Now().Add(spliceBound); ended.Load() != int64(sessions); {
		if time.Now().After(end) {
			t.Fatalf("%d of %d sessions ended", ended.Load(), sessions)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func memStats() runtime.MemStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// rssBytes reads the process's resident set size.
func rssBytes(t testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// TestLoopFootprintPeers is TestLoopIdleFootprint's peer process: it dials
// the sessions' clients and accepts their nodes in lockstep with the parent
// (so client i and node i are one session), moves one message each way
// through each on "go", and hangs up on "end".
func TestLoopFootprintPeers(t *testing.T) {
	addr := os.Getenv(peersEnvAddr)
	if addr == "" {
		t.Skip("the peer process of TestLoopIdleFootprint")
	}
	n, _ := strconv.Atoi(os.Getenv(peersEnvCount))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fmt.Println(peersPrefix + ln.Addr().String())
	clients, nodes := make([]net.Conn, n), make([]net.Conn, n)
	for i := range n {
		if clients[i], err = net.Dial("tcp", addr); err != nil {
			t.Fatal(err)
		}
		if nodes[i], err = ln.Accept(); err != nil {
			t.Fatal(err)
		}
	}
	in := bufio.NewScanner(os.Stdin)
	in.Scan() // "go"
	b := make([]byte, 4)
	for i := range n {
		for _, p := range [2][2]net.Conn{{clients[i], nodes[i]}, {nodes[i], clients[i]}} {
			p[1].SetReadDeadline(time.Now().Add(spliceBound))
			if _, err := p[0].Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(p[1], b); err != nil {
				fmt.Println(peersPrefix + err.Error())
				t.Fatal(err)
			}
		}
	}
	fmt.Println(peersPrefix + "ok")
	in.Scan() // "end", or the parent's end
	for i := range n {
		clients[i].Close()
		nodes[i].Close()
	}
}
