package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/tether-lb/tether/proxy/internal/wire"
)

// BenchmarkRequestHeadRewrite is the work on a request head between the
// client and the node: "read" reads and checks it (wire.ReadRequestHead),
// "read+rewrite" also turns it into the node's (prepareRequest) and
// serializes it. The difference is the rewrite. The heads: a browser's GET
// with the sticky cookie, the same with Connection: keep-alive, and the same
// from a proxy ahead that sent its own forwarding fields.
func BenchmarkRequestHeadRewrite(b *testing.B) {
	heads := []struct{ name, head string }{
		{"browser", browserRequest},
		{"keep-alive", strings.Replace(browserRequest, "Accept: */*\r\n", "Accept: */*\r\nConnection: keep-alive\r\n", 1)},
		{"behind-proxy", strings.Replace(browserRequest, "Accept: */*\r\n",
			"Accept: */*\r\nX-Forwarded-For: 198.51.100.4\r\nX-Forwarded-Proto: https\r\nX-Real-Ip: 198.51.100.4\r\n", 1)},
	}
	for _, hd := range heads {
		for _, rewrite := range []bool{false, true} {
			name := hd.name + "/read"
			if rewrite {
				name = hd.name + "/read+rewrite"
			}
			b.Run(name, func(b *testing.B) {
				x := newExchange(nil)
				x.conn = &conn{remoteIP: "203.0.113.7"}
				src := strings.NewReader(hd.head)
				br := bufio.NewReaderSize(src, 4096)
				b.ReportAllocs()
				for b.Loop() {
					src.Reset(hd.head)
					br.Reset(src)
					fr, err := wire.ReadRequestHead(br, x.req, 4096, 100)
					if err != nil {
						b.Fatal(err)
					}
					if rewrite {
						x.nh.Prepare(x.req, fr.Fields)
						x.head = x.nh.Append(x.head[:0], x.req, x.conn.remoteIP, x.conn.secure, fr.Upgrade)
					}
				}
			})
		}
	}
}
