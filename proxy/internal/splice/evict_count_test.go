//go:build linux

package splice

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/sockio/sockiotest"
	"github.com/tether-lb/tether/proxy/internal/wire"
)

// TestEvictionsCounted: tether_node_evictions_total counts every session
// ended because its node failed, once, whichever noticed first: the node's
// stream ending without a Close (the process died) or the health loop
// marking the node down; a session told 1001 (shutdown) is not counted.
func TestEvictionsCounted(t *testing.T) {
	eachEngine(t, func(t *testing.T, sp Engine) {
		p, err := pool.New(pool.Config{Cooldown: time.Hour, Nodes: []pool.NodeConfig{
			{Name: "CB_Server_1", URL: "http://127.0.0.1:1"},
			{Name: "CB_Server_2", URL: "http://127.0.0.1:2"},
		}}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		n, m := p.Node("CB_Server_1"), p.Node("CB_Server_2")
		lb := sockiotest.NewPairs(t)
		start := func(node *pool.Node) *rig {
			reg := &notifyingRegistry{Node: node, added: make(chan struct{}, 1)}
			r := startSplice(t, lb, sp, func(s *Session, _ *rig) {
				s.WebSocket = true
				s.Registry = reg
			})
			t.Cleanup(r.close)
			select {
			case <-reg.added:
			case <-time.After(spliceBound):
				t.Fatal("session never registered")
			}
			return r
		}
		told := func(r *rig, want []byte) {
			t.Helper()
			r.client.SetReadDeadline(time.Now().Add(spliceBound))
			if got := readAll(t, r.client); !bytes.Equal(got, want) {
				t.Fatalf("client got % x, want % x", got, want)
			}
		}
		evictions := func(node *pool.Node, want uint64) {
			t.Helper()
			if got := node.Stats.Evictions.Load(); got != want {
				t.Fatalf("%s: %d evictions counted, want %d", node.Name, got, want)
			}
		}

		// died: the node's process dies; the session is told 1012 and ends
		// before the health loop notices. lingering: the same, but its
		// client has not hung up when the health loop evicts it. healthy:
		// its node stream is fine until the health loop marks the node
		// down. shut: on another node, told 1001 by a shutdown.
		died, lingering, healthy, shut := start(n), start(n), start(n), start(m)
		died.node.Close()
		told(died, wire.CloseFrameFor(1012))
		died.client.Close()
		var toldErr *toldError
		if res := died.wait(t); !errors.As(res.err, &toldErr) {
			t.Fatalf("session result %v, want told 1012", res.err)
		}
		evictions(n, 1)

		lingering.node.Close()
		told(lingering, wire.CloseFrameFor(1012))
		evictions(n, 2)

		n.Fail(errors.New("health probe failed"))
		told(healthy, wire.CloseFrameFor(1012))
		for _, r := range []*rig{lingering, healthy} {
			r.client.Close()
			r.wait(t)
		}

		p.EvictAll(t.Context(), pool.CloseGoingAway, 0)
		told(shut, wire.CloseFrameFor(1001))
		shut.client.Close()
		shut.wait(t)
		if ls, ok := sp.(*Loops); ok {
			ls.Close() // every eviction queued to the loops has run
		}
		evictions(n, 3)
		evictions(m, 0)
	})
}

// notifyingRegistry is a node's registry that says when a session has
// registered.
type notifyingRegistry struct {
	*pool.Node
	added chan struct{}
}

func (r *notifyingRegistry) Register(e pool.Evictor) {
	r.Node.Register(e)
	r.added <- struct{}{}
}
