package proxy

import "testing"

// BenchmarkForwardKeepAliveGoroutines is BenchmarkForwardKeepAlive with the
// http loops off (--http-loops -1): the connection keeps a goroutine that
// waits for each next request itself.
func BenchmarkForwardKeepAliveGoroutines(b *testing.B) {
	node := startRawNode(b, benchAnswer)
	cfg := oneNode(node.ln.Addr().String())
	cfg.HTTPLoops = -1
	_, addr := startServer(b, cfg, false)
	roundTrips(b, addr)
}
