//go:build !race

package proxy

import (
	"net"
	"testing"
	"time"
)

// TestForwardKeepAliveAllocs: a keep-alive request through tether (head
// read and checked, routed, forwarded over a pooled node connection, answer
// relayed) allocates nothing, the client's and node's sides included, with
// a goroutine per connection (--http-loops -1; TestForwardKeepAliveLoopsAllocs
// is the default's).
func TestForwardKeepAliveAllocs(t *testing.T) {
	node := startRawNode(t, benchAnswer)
	cfg := oneNode(node.ln.Addr().String())
	cfg.HTTPLoops = -1
	_, addr := startServer(t, cfg, false)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	roundTrip := benchRoundTrip(t, c)
	for range 100 { // pools filled, node connection pooled
		roundTrip()
	}
	if n := testing.AllocsPerRun(500, roundTrip); n != 0 {
		t.Errorf("a keep-alive request through tether allocates %v times, want 0", n)
	}
}
