//go:build !race

package proxy

import (
	"net"
	"testing"
	"time"
)

// TestForwardKeepAliveLoopsAllocs: a keep-alive request served from the
// http loops (the loop's hand-off to a worker, the burst, the connection
// back to its loop) allocates nothing, the client's and node's sides
// included.
func TestForwardKeepAliveLoopsAllocs(t *testing.T) {
	node := startRawNode(t, benchAnswer)
	cfg := oneNode(node.ln.Addr().String())
	cfg.HTTPLoops = 0 // the loops (the default)
	_, addr := startServer(t, cfg, false)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	roundTrip := benchRoundTrip(t, c)
	for range 100 { // pools filled, node connection pooled, workers started
		roundTrip()
	}
	if n := testing.AllocsPerRun(500, roundTrip); n != 0 {
		t.Errorf("a keep-alive request through the http loops allocates %v times, want 0", n)
	}
}
