package proxyhdr

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/tether-lb/tether/proxy/internal/proxyhdr/proxyhdrtest"
	"github.com/tether-lb/tether/proxy/internal/sockio"
)

// The PROXY protocol's cost per connection: parsing a header held in
// memory, and reading one from a socket (peek, exact read, parse) beside
// a plain read of the same bytes.

var (
	benchV1 = []byte("PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n")
	benchV6 = []byte("PROXY TCP6 2001:db8::7 2001:db8::1 56324 443\r\n")
)

// BenchmarkProxyHeaderParse: the parse alone (length, go-proxyproto,
// address text), from memory.
func BenchmarkProxyHeaderParse(b *testing.B) {
	for _, bc := range []struct {
		name string
		h    []byte
	}{
		{"v1tcp4", benchV1}, {"v1tcp6", benchV6},
		{"v2tcp4", proxyhdrtest.V2Header(b, "198.51.100.9", nil)},
		{"v2tcp4tlv", proxyhdrtest.V2Header(b, "198.51.100.9", proxyhdrtest.TLV(0xEA, 40))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p := proxyReaders.Get().(*proxyReader)
				n, err := proxyHeaderLen(bc.h)
				if err != nil || n != len(bc.h) {
					b.Fatal(n, err)
				}
				copy(p.buf[:], bc.h)
				addr, err := p.parse(n)
				if err != nil || addr == "" {
					b.Fatal(addr, err)
				}
				proxyReaders.Put(p)
			}
		})
	}
}

// benchPair returns both ends of a loopback TCP connection.
func benchPair(b *testing.B) (client, server *net.TCPConn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// BenchmarkProxyHeaderRead: a header written to a loopback socket and read
// by Read (peek, exact read, parse), against "plain": the same
// bytes read with one Read, as a connection without the protocol reads its
// first bytes.
func BenchmarkProxyHeaderRead(b *testing.B) {
	for _, bc := range []struct {
		name string
		h    []byte
	}{
		{"v1tcp4", benchV1},
		{"v2tcp4", proxyhdrtest.V2Header(b, "198.51.100.9", nil)},
		{"plain", benchV1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			client, server := benchPair(b)
			rc := sockio.RawConnOf(server)
			buf := make([]byte, len(bc.h))
			server.SetReadDeadline(time.Now().Add(time.Hour))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Write(bc.h); err != nil {
					b.Fatal(err)
				}
				if bc.name == "plain" {
					if _, err := io.ReadFull(server, buf); err != nil {
						b.Fatal(err)
					}
					continue
				}
				if addr, err := Read(server, rc); err != nil || addr == "" {
					b.Fatal(addr, err)
				}
			}
		})
	}
}
