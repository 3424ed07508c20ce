package proxy

import (
	"net"
	"testing"

	"github.com/tether-lb/tether/internal/syscount"
)

// BenchmarkForwardKeepAliveLoops is BenchmarkForwardKeepAlive with the
// http loops on (the default): the connection waits for each next
// request on a loop, and a worker serves it.
func BenchmarkForwardKeepAliveLoops(b *testing.B) {
	node := startRawNode(b, benchAnswer)
	cfg := oneNode(node.ln.Addr().String())
	cfg.HTTPLoops = 0 // the loops (the default)
	_, addr := startServer(b, cfg, false)
	roundTrips(b, addr)
}

// BenchmarkForwardKeepAliveConns runs keep-alive requests on 32
// connections at once (16 per CPU), with the http loops (loops) and
// without (goroutines): the readiness of many connections is then batched,
// as under a load generator. ns/op is the whole process's (clients, node
// and tether) time per request over the CPUs.
func BenchmarkForwardKeepAliveConns(b *testing.B) {
	for _, bc := range []struct {
		name  string
		loops int
	}{{"loops", 0}, {"goroutines", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			node := startRawNode(b, benchAnswer)
			cfg := oneNode(node.ln.Addr().String())
			cfg.HTTPLoops = bc.loops
			_, addr := startServer(b, cfg, false)
			b.SetParallelism(16)
			b.ReportAllocs()
			sc := syscount.Start(b)
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				roundTrip := benchRoundTrip(b, c)
				for pb.Next() {
					roundTrip()
				}
			})
			sc.Report(b)
		})
	}
}
