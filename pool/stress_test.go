package pool

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// markDown and markUp are the health loop's verdicts, as it gives them.
func markDown(n *Node) { n.setHealth(false, "probe failed") }
func markUp(n *Node)   { n.setHealth(true, "") }

// TestStateChangesLoseNothing races the health loop's verdict against the
// operator's drain and enable and against a reload, round after round, and
// checks after each round that the verdict and the drain both hold: a node
// whose last probe failed is down whatever the operator or a reload did
// meanwhile, and a drained node that comes back is draining, not up.
func TestStateChangesLoseNothing(t *testing.T) {
	cfg := Config{HealthInterval: time.Hour, DrainTimeout: time.Hour, Nodes: []NodeConfig{
		{Name: "A", URL: "http://127.0.0.1:1"},
		{Name: "B", URL: "http://127.0.0.1:2"},
	}}
	p, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a := p.Node("A")
	race := func(f, g func()) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Go(func() { <-start; f() })
		wg.Go(func() { <-start; g() })
		close(start)
		wg.Wait()
	}
	const rounds = 5000
	var lost [3]int
	for round := range rounds {
		markUp(a)
		a.Enable()
		// The node fails while the operator drains and enables it.
		race(func() { markDown(a) }, func() { a.Drain(); a.Enable() })
		if s := a.State(); s != StateDown {
			lost[0]++
			if lost[0] == 1 {
				t.Errorf("round %d: a node whose probe failed during a drain is %s, want down", round, s)
			}
		}
		// A drained node that was down comes back while drained again.
		a.Enable()
		markDown(a)
		race(func() { markUp(a) }, func() { a.Drain() })
		if s := a.State(); s != StateDraining {
			lost[1]++
			if lost[1] == 1 {
				t.Errorf("round %d: a drained node that came back is %s, want draining", round, s)
			}
		}
	}
	// A reload removes a node while its probe fails.
	for round := range rounds / 10 {
		name := fmt.Sprintf("R%d", round)
		cfg.Nodes = append(cfg.Nodes[:2], NodeConfig{Name: name, URL: "http://127.0.0.1:3"})
		if err := p.Update(cfg); err != nil {
			t.Fatal(err)
		}
		r := p.Node(name)
		cfg.Nodes = cfg.Nodes[:2]
		race(func() { markDown(r) }, func() {
			if err := p.Update(cfg); err != nil {
				t.Error(err)
			}
		})
		if s := r.State(); s != StateDown || !r.Removed() {
			lost[2]++
			if lost[2] == 1 {
				t.Errorf("round %d: a removed node whose probe failed is %s (removed %v), want down", round, s, r.Removed())
			}
		}
	}
	if lost != [3]int{} {
		t.Errorf("verdicts lost: %d of %d to a drain, %d of %d drains lost to a recovery, %d of %d to a reload",
			lost[0], rounds, lost[1], rounds, lost[2], rounds/10)
	}
}

// holdNode accepts connections and holds them open, unread, until the test
// ends; it counts them.
func holdNode(t *testing.T) (addr string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	var mu sync.Mutex
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String(), accepted
}

// selfEvictor is a session that ends as soon as it is told: it leaves its
// node's registry at once, as a splice does when it ends.
type selfEvictor struct {
	Registered
	node *Node
	told atomic.Uint32
}

func (e *selfEvictor) Evict(code uint16) {
	e.told.CompareAndSwap(0, uint32(code))
	e.node.Unregister(e)
}

// TestRemovedNodeLeavesNothing removes a node by a reload while requests
// borrow and return its connections, sessions register with it, nodes flap
// and drain, further reloads add and remove other nodes, and the pool's
// own iterations (EvictAll, the idle sweep) run. Once the node is gone
// nothing may be left of it: no idle connection, nothing lent, no session.
func TestRemovedNodeLeavesNothing(t *testing.T) {
	addr, _ := holdNode(t)
	cfg := Config{
		HealthInterval: time.Hour, DrainTimeout: 30 * time.Millisecond, IdleTimeout: time.Hour,
		Nodes: []NodeConfig{{Name: "A", URL: "http://" + addr}, {Name: "B", URL: "http://" + addr}},
	}
	p, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, b := p.Node("A"), p.Node("B")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var lends, registered atomic.Int64
	for range 3 { // requests on A: borrow, give back
		wg.Go(func() {
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := a.Get(false)
				if err != nil {
					continue
				}
				lends.Add(1)
				c.Put()
			}
		})
	}
	wg.Go(func() { // sessions on A: register, end
		for i := 0; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			e := &selfEvictor{node: a}
			a.Register(e)
			registered.Add(1)
			if i%2 == 0 {
				a.Unregister(e)
			}
		}
	})
	wg.Go(func() { // B flaps and drains; EvictAll and the sweep iterate
		for i := 0; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			switch i % 4 {
			case 0:
				b.Fail(errors.New("flap"))
			case 1:
				markUp(b)
			case 2:
				b.Drain()
			default:
				b.Enable()
			}
			p.EvictAll(t.Context(), CloseGoingAway, 0)
			for _, n := range p.Table().Nodes() {
				n.sweepIdle(time.Now())
			}
		}
	})
	// Let the borrowers get going, then reload: A removed; later reloads
	// add and remove C while A finishes its drain.
	deadline := time.Now().Add(5 * time.Second)
	for lends.Load() < 50 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cfg.Nodes = cfg.Nodes[1:]
	if err := p.Update(cfg); err != nil {
		t.Fatal(err)
	}
	for i := 0; p.Node("A") != nil && time.Now().Before(deadline); i++ {
		c := cfg
		if i%2 == 0 {
			c.Nodes = append(c.Nodes[:1:1], NodeConfig{Name: "C", URL: "http://" + addr})
		}
		if err := p.Update(c); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if p.Node("A") != nil {
		t.Fatal("removed node still in the table after its drain")
	}
	// Requests and sessions keep coming at the gone node for a while.
	more := lends.Load() + registered.Load() + 200
	for lends.Load()+registered.Load() < more && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if n := a.IdleConns(); n != 0 {
		t.Errorf("%d idle connections left in the pool of a removed node", n)
	}
	a.smu.Lock()
	busy, sessions := len(a.busy), len(a.sessions)
	a.smu.Unlock()
	if busy != 0 || sessions != 0 {
		t.Errorf("removed node still holds %d lent connections and %d sessions", busy, sessions)
	}
	if lends.Load() == 0 || registered.Load() == 0 {
		t.Fatalf("nothing ran: %d lends, %d sessions", lends.Load(), registered.Load())
	}
}

// TestDownNodeIsNotDialled: a node that is down lends nothing and is not
// dialled (ErrNodeDown), even for a fresh connection; a connection given
// back to it is closed, and one lent when it went down is evicted.
func TestDownNodeIsNotDialled(t *testing.T) {
	addr, accepted := holdNode(t)
	p, err := New(Config{HealthInterval: time.Hour, Nodes: []NodeConfig{{Name: "A", URL: "http://" + addr}}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a := p.Node("A")
	idle, err := a.Get(false)
	if err != nil {
		t.Fatal(err)
	}
	lent, err := a.Get(false)
	if err != nil {
		t.Fatal(err)
	}
	idle.Put()
	markDown(a)
	for _, fresh := range []bool{false, true} {
		if c, err := a.Get(fresh); !errors.Is(err, ErrNodeDown) {
			t.Fatalf("Get(%v) on a down node: %v, %v; want ErrNodeDown", fresh, c, err)
		}
	}
	// The listener counts an accept after the dial returned: wait for both.
	for deadline := time.Now().Add(5 * time.Second); accepted.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if n := accepted.Load(); n != 2 || a.Dials.Load() != 2 {
		t.Fatalf("the node accepted %d connections (%d dials), want the 2 made while it was up", n, a.Dials.Load())
	}
	if n := a.IdleConns(); n != 0 {
		t.Fatalf("%d idle connections kept on a down node", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !lent.Evicted() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !lent.Evicted() {
		t.Fatal("a connection lent when the node went down was not evicted")
	}
	lent.Put()
	if n := a.IdleConns(); n != 0 {
		t.Fatal("an evicted connection was pooled")
	}
	markUp(a)
	if c, err := a.Get(false); err != nil || c.Reused {
		t.Fatalf("Get after the node came back: %v (reused %v), want a new connection", err, c != nil && c.Reused)
	}
}
