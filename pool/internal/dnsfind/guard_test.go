package dnsfind

import (
	"net/netip"
	"testing"
)

func TestAddrGuard(t *testing.T) {
	g := NewGuard(false, []string{"127.0.0.1:9090", "[::1]:9091", ":8080", "localhost:8081", "192.0.2.1:80", "198.18.0.1:0"}, []netip.Addr{netip.MustParseAddr("198.18.0.7")})
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"192.0.2.5:80", true},
		{"192.0.2.1:80", false},    // own listener
		{"192.0.2.1:81", true},     // another port of that address
		{"198.18.0.7:8080", false}, // this host's address at a port listened on every address
		{"198.18.0.7:8081", false}, // a listener named by a host name: the same
		{"198.18.0.8:8080", true},  // another host
		{"198.18.0.1:1234", true},  // port 0 matches nothing
		{"127.0.0.1:1234", false},  // loopback
		{"[::ffff:127.0.0.1]:1", false},
		{"0.0.0.0:80", false},
		{"0.1.2.3:80", false}, // "this network"
		{"[::]:80", false},
		{"224.0.0.1:80", false},
		{"[ff02::1]:80", false},
		{"169.254.169.254:80", false},
		{"[fe80::1]:80", false},
		{"255.255.255.255:80", false},
	} {
		if why := g.Refuse(netip.MustParseAddrPort(c.addr)); (why == "") != c.ok {
			t.Errorf("%s: refused %q, want ok %v", c.addr, why, c.ok)
		}
	}
	g.allowLoopback = true
	for addr, ok := range map[string]bool{
		"127.0.0.1:1234": true, "[::1]:1234": true, "127.0.0.1:9090": false, "127.0.0.2:9090": true,
		"[::1]:9091": false, "127.0.0.5:8080": false, "[::1]:8081": false, "0.0.0.0:1234": false,
	} {
		if why := g.Refuse(netip.MustParseAddrPort(addr)); (why == "") != ok {
			t.Errorf("loopback allowed, %s: refused %q, want ok %v", addr, why, ok)
		}
	}
}
