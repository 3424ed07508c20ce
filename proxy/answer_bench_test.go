//go:build !race

package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/tether-lb/tether/proxy/internal/wire"
)

// benchAnswerHeads are node answer heads as the bench's fake node sends
// them (fixed), and a chunked one with hop-by-hop fields to drop.
var benchAnswerHeads = []struct{ name, head string }{
	{"fixed", "HTTP/1.1 200 OK\r\nServer: tether-bench\r\nDate: Sun, 06 Dec 2026 14:53:39 GMT\r\n" +
		"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\nX-Node: CB_Server_1\r\n" +
		"Set-Cookie: gcbSessionServer=CB_Server_1; Path=/\r\n\r\n"},
	{"chunked-hop", "HTTP/1.1 200 OK\r\nServer: tether-bench\r\nDate: Sun, 06 Dec 2026 14:53:39 GMT\r\n" +
		"Connection: keep-alive, X-Trace\r\nKeep-Alive: timeout=5\r\nContent-Type: text/css\r\n" +
		"Transfer-Encoding: chunked\r\nX-Trace: abc\r\nX-Node: CB_Server_1\r\n\r\n"},
}

// BenchmarkAnswerHead is the answer head's way through tether: read and
// checked from the node reader, then serialized for the client less its
// hop-by-hop fields.
func BenchmarkAnswerHead(b *testing.B) {
	for _, c := range benchAnswerHeads {
		b.Run(c.name, func(b *testing.B) {
			x := newExchange(&Server{})
			r := strings.NewReader(c.head)
			br := bufio.NewReaderSize(r, 4096)
			b.ReportAllocs()
			b.SetBytes(int64(len(c.head)))
			for b.Loop() {
				r.Reset(c.head)
				br.Reset(r)
				benchRelayHead(b, x, br)
			}
		})
	}
}

// benchRelayHead reads one answer head from br and serializes it into
// x.head, as readFinalHead and relayAnswer do for a kept client.
func benchRelayHead(b *testing.B, x *exchange, br *bufio.Reader) {
	if _, err := wire.ReadResponseHead(br, &x.ans, 64<<10, false); err != nil {
		b.Fatal(err)
	}
	x.head = x.ans.Relay(x.head[:0], br, wire.ConnNone)
}
