package proxyhdr

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/tether-lb/tether/proxy/internal/proxyhdr/proxyhdrtest"
)

// TestTrustedSource: IPv4-mapped addresses match IPv4 networks.
func TestTrustedSource(t *testing.T) {
	from := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"198.19.2.3", true}, {"::ffff:198.19.2.3", true}, {"fd00::1", true}, {"198.20.0.1", false}, {"127.0.0.1", false},
	} {
		if got := Trusted(from, &net.TCPAddr{IP: net.ParseIP(tc.ip), Port: 1}); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.ip, got, tc.want)
		}
	}
}

// FuzzProxyHeader: any bytes give a length or an error, never a panic or a
// length past the bound; a header found is parsed without a panic, and an
// address it yields is an IP address.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\nGET / HTTP/1.1\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::7 2001:db8::1 56324 443\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add(proxyhdrtest.V2Header(f, "198.51.100.9", proxyhdrtest.TLV(0xEA, 10)))
	f.Add(proxyhdrtest.V2Header(f, "2001:db8::9", nil))
	f.Add(proxyhdrtest.V2Header(f, "", nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := proxyHeaderLen(b)
		if err != nil || n == 0 {
			return
		}
		if n > V2Prefix+MaxV2Length || (bytes.HasPrefix(b, proxyV1Sig) && n > proxyV1Max) {
			t.Fatalf("length %d past the bound", n)
		}
		if n > len(b) {
			return
		}
		p := proxyReaders.Get().(*proxyReader)
		defer proxyReaders.Put(p)
		copy(p.buf[:], b[:n])
		addr, err := p.parse(n)
		if err == nil && addr != "" {
			if _, perr := netip.ParseAddr(addr); perr != nil {
				t.Fatalf("address %q from %q is not an IP", addr, b[:n])
			}
		}
	})
}
