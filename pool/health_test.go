package pool

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
)

// gatedNode is a node whose health answers the test gives one by one: each
// probe is announced on arrived and answered with the status sent on
// answer, so a test knows when a probe is out and when its verdict was
// taken (the loop sends the next probe only after that).
type gatedNode struct {
	addr    string
	arrived chan struct{}
	answer  chan int
	done    chan struct{}
}

// startGatedNode listens on a free loopback port; stop ends it.
func startGatedNode(t *testing.T) *gatedNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedNode{addr: ln.Addr().String(), arrived: make(chan struct{}), answer: make(chan int), done: make(chan struct{})}
	go g.serve(ln)
	return g
}

func (g *gatedNode) serve(ln net.Listener) {
	go func() { <-g.done; ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go g.probe(c)
	}
}

// probe reads one request head and answers it when the test says.
func (g *gatedNode) probe(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := textproto.NewReader(bufio.NewReader(c))
	if _, err := r.ReadLine(); err != nil {
		return
	}
	if _, err := r.ReadMIMEHeader(); err != nil {
		return
	}
	select {
	case g.arrived <- struct{}{}:
	case <-g.done:
		return
	}
	select {
	case code := <-g.answer:
		fmt.Fprintf(c, "HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", code)
	case <-g.done:
	}
}

// next waits for a probe to be out.
func (g *gatedNode) next(t *testing.T) {
	t.Helper()
	select {
	case <-g.arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("no probe within 5s")
	}
}

// reply answers the probe that is out.
func (g *gatedNode) reply(t *testing.T, code int) {
	t.Helper()
	select {
	case g.answer <- code:
	case <-time.After(5 * time.Second):
		t.Fatal("no probe waiting for its answer within 5s")
	}
}

func (g *gatedNode) stop() { close(g.done) }

// TestFailDuringProbe: a probe that is out when live traffic fails (Fail)
// passes after the failure, with its run of good probes already at --rise:
// the node stays down, and comes back only after --rise good probes sent
// after the failure.
func TestFailDuringProbe(t *testing.T) {
	for _, rise := range []int{1, 2} {
		t.Run(fmt.Sprintf("rise=%d", rise), func(t *testing.T) {
			g := startGatedNode(t)
			p := newTestPool(t, Config{HealthInterval: time.Millisecond, HealthTimeout: 10 * time.Second, Rise: rise, Fall: 1}, "http://"+g.addr)
			t.Cleanup(g.stop) // before the pool's Close: a probe out is let go
			n := p.Node("CB_Server_1")
			for range rise + 1 {
				g.next(t)
				g.reply(t, 200)
			}
			g.next(t) // a probe is out
			n.Fail(errors.New("dial CB_Server_1: connection refused"))
			if n.State() != StateDown {
				t.Fatalf("after Fail: %s", n.State())
			}
			g.reply(t, 200) // it passes, after the failure
			for i := range rise {
				g.next(t) // the verdict on the previous probe is taken
				if s := n.State(); s != StateDown {
					t.Fatalf("%s after the probe that was out and %d good probes sent after the failure; want down until %d", s, i, rise)
				}
				g.reply(t, 200)
			}
			waitState(t, n, StateUp, 5*time.Second)
		})
	}
}

// TestFailRestartsCooldown: with active checks off, a failure during the
// cooldown of an earlier one starts the cooldown again.
func TestFailRestartsCooldown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := New(Config{Nodes: []NodeConfig{{Name: "a", URL: "http://127.0.0.1:1"}}, Cooldown: 10 * time.Second}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		n := p.Node("a")
		fail := errors.New("dial a: connection refused")
		n.Fail(fail)
		time.Sleep(6 * time.Second)
		synctest.Wait()
		if n.State() != StateDown {
			t.Fatalf("6s into a 10s cooldown: %s", n.State())
		}
		n.Fail(fail) // the node is down already: the cooldown starts again
		time.Sleep(6 * time.Second)
		synctest.Wait()
		if n.State() != StateDown {
			t.Fatalf("12s after a failure and 6s after another: %s, want down until 10s after the last", n.State())
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n.State() != StateUp {
			t.Fatalf("11s after the last failure: %s", n.State())
		}
	})
}
