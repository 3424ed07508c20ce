package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/tether-lb/tether/proxy/internal/wire"
)

// BenchmarkRequestHeadRewrite is the work on a browser's request head
// between the client and the node: "read" reads and checks it
// (wire.ReadRequestHead), "read+rewrite" also turns it into the node's
// (prepareRequest) and serializes it. The difference is the rewrite.
func BenchmarkRequestHeadRewrite(b *testing.B) {
	for _, rewrite := range []bool{false, true} {
		name := "read"
		if rewrite {
			name = "read+rewrite"
		}
		b.Run(name, func(b *testing.B) {
			x := newExchange(nil)
			x.conn = &conn{remoteIP: "203.0.113.7"}
			src := strings.NewReader(browserRequest)
			br := bufio.NewReaderSize(src, 4096)
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(browserRequest)
				br.Reset(src)
				fr, err := wire.ReadRequestHead(br, x.req, 4096, 100)
				if err != nil {
					b.Fatal(err)
				}
				if rewrite {
					x.prepareRequest(fr.Fields)
					x.head = x.appendRequestHead(x.head[:0], fr.Upgrade)
				}
			}
		})
	}
}
