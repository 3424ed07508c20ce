// Package sockiotest hands out connected loopback TCP pairs to the tests of
// the socket, splice and conductor packages. It is for tests only.
package sockiotest

import (
	"net"
	"testing"
	"time"
)

// Pairs hands out connected TCP pairs on 127.0.0.1, from one listener that
// the test's cleanup closes.
type Pairs struct {
	ln *net.TCPListener
}

// NewPairs listens on a free loopback port for the length of the test.
func NewPairs(t testing.TB) *Pairs {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &Pairs{ln: ln}
}

// Pair returns both ends of one connection; the caller closes them.
func (l *Pairs) Pair(t testing.TB) (dialed, accepted *net.TCPConn) {
	t.Helper()
	d, err := net.DialTCP("tcp", nil, l.ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.ln.AcceptTCP()
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	return d, a
}

// Bound bounds every wait of a socket test; nothing should come near it.
const Bound = 20 * time.Second
