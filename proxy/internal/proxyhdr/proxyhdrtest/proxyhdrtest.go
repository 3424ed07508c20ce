// Package proxyhdrtest builds PROXY protocol v2 headers for the tests of
// package proxyhdr and of the conductor. It is for tests only.
package proxyhdrtest

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/pires/go-proxyproto"
)

// V2Header formats a v2 header of cmd from src (nil: LOCAL, no address)
// with tlvs appended.
func V2Header(t testing.TB, src string, tlvs []byte) []byte {
	t.Helper()
	h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	if src != "" {
		ip := netip.MustParseAddr(src)
		h.Command, h.TransportProtocol = proxyproto.PROXY, proxyproto.TCPv4
		dst := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 443}
		if ip.Is6() {
			h.TransportProtocol = proxyproto.TCPv6
			dst = &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443}
		}
		h.SourceAddr, h.DestinationAddr = &net.TCPAddr{IP: ip.AsSlice(), Port: 56324}, dst
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	if len(tlvs) > 0 {
		b = append(b, tlvs...)
		binary.BigEndian.PutUint16(b[14:16], uint16(len(b)-16))
	}
	return b
}

// TLV is one type-length-value entry of length n.
func TLV(typ byte, n int) []byte {
	b := []byte{typ, byte(n >> 8), byte(n)}
	return append(b, strings.Repeat("x", n)...)
}
