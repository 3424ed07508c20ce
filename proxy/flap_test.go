package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/pool"
)

// TestRoutingWhileNodesFlap sends requests through a Server from several
// clients while nodes fail, come back, drain and enable underneath them.
// Under -race it checks the table swaps; always it checks that every request
// gets an answer, that a drain outlives the node's failures, and that no
// node's counters leak.
func TestRoutingWhileNodesFlap(t *testing.T) {
	answer := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	nodes := []*rawNode{startRawNode(t, answer), startRawNode(t, answer), startRawNode(t, answer)}
	cfg := Config{Pool: pool.Config{Cooldown: 5 * time.Millisecond}}
	for i, n := range nodes {
		cfg.Pool.Nodes = append(cfg.Pool.Nodes, pool.NodeConfig{Name: fmt.Sprintf("CB_Server_%d", i+1), URL: "http://" + n.ln.Addr().String()})
	}
	s, addr := serveWith(t, cfg, zerolog.Nop(), zerolog.Nop(), false)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	counts := make([]map[int]int, 4)
	// answered counts every client's answers, ok0 the first client's 200s:
	// the flapping goes on for a second and until the clients have had
	// answers enough, however slowly this machine serves them.
	var answered, ok0 atomic.Int64
	for i := range counts {
		counts[i] = map[int]int{}
		wg.Go(func() {
			flapClient(t, addr, stop, counts[i], func(status int) {
				answered.Add(1)
				if i == 0 && status == 200 {
					ok0.Add(1)
				}
			})
		})
	}
	minEnd := time.Now().Add(time.Second)
	maxEnd := time.Now().Add(30 * time.Second)
	enough := func() bool {
		return time.Now().After(minEnd) && answered.Load() >= 100 && ok0.Load() > 0
	}
	r := rand.New(rand.NewPCG(3, 4))
	var drained [3]bool // the operator's last word per node
	for !enough() && time.Now().Before(maxEnd) {
		i := r.IntN(3)
		n := s.Pool().Table().Nodes()[i]
		switch r.IntN(3) {
		case 0:
			n.Fail(errors.New("flap"))
		case 1:
			n.Drain()
			drained[i] = true
		default:
			n.Enable()
			drained[i] = false
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	// Once the failed nodes are back (after the cooldown), each is in the
	// state the operator left it in: a drain holds through down and up.
	for i, n := range s.Pool().Table().Nodes() {
		deadline := time.Now().Add(2 * time.Second)
		for n.State() == pool.StateDown && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		want := pool.StateUp
		if drained[i] {
			want = pool.StateDraining
		}
		if got := n.State(); got != want {
			t.Errorf("%s is %s after the flapping, want %s (drained %v)", n.Name, got, want, drained[i])
		}
	}
	total := 0
	for _, c := range counts {
		for status, k := range c {
			if status != 200 && status != 502 && status != 503 {
				t.Errorf("status %d answered %d times", status, k)
			}
			total += k
		}
	}
	t.Logf("answers by status, per client: %v", counts)
	if counts[0][200] == 0 || total < 100 {
		t.Fatalf("too few answers while flapping: %v", counts)
	}
	// A handler may still be between writing its last answer and counting
	// it done: give the counters a moment, then they must be back to zero.
	for _, n := range s.Pool().Table().Nodes() {
		deadline := time.Now().Add(2 * time.Second)
		for (n.Active() != 0 || n.InFlight() != 0) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if a, f := n.Active(), n.InFlight(); a != 0 || f != 0 {
			t.Errorf("%s: %d active, %d in flight after all requests ended", n.Name, a, f)
		}
	}
}

// flapClient sends requests with random stickiness until stop, reconnecting
// after a closed connection, and counts statuses; it reports each answer's
// status to answered as well.
func flapClient(t *testing.T, addr string, stop chan struct{}, counts map[int]int, answered func(status int)) {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var c net.Conn
	var br *bufio.Reader
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for {
		select {
		case <-stop:
			return
		default:
		}
		if c == nil {
			var err error
			if c, err = net.Dial("tcp", addr); err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			br = bufio.NewReader(c)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		req := fmt.Sprintf("GET /x HTTP/1.1\r\nHost: a\r\nCookie: gcbSessionServer=CB_Server_%d\r\n\r\n", 1+r.IntN(3))
		if _, err := io.WriteString(c, req); err != nil {
			c.Close()
			c = nil
			continue
		}
		var status int
		line, err := br.ReadString('\n')
		if err == nil {
			_, err = fmt.Sscanf(line, "HTTP/1.1 %d", &status)
		}
		if err != nil {
			t.Errorf("no answer: %v", err)
			return
		}
		counts[status]++
		answered(status)
		// Skip the rest of the answer: headers, then the body.
		cl := 0
		for {
			h, err := br.ReadString('\n')
			if err != nil {
				t.Errorf("answer head: %v", err)
				return
			}
			if h == "\r\n" {
				break
			}
			fmt.Sscanf(h, "Content-Length: %d", &cl)
		}
		if _, err := br.Discard(cl); err != nil {
			t.Errorf("answer body: %v", err)
			return
		}
		if status != 200 {
			c.Close() // tether closes after its own error answers
			c = nil
		}
	}
}
