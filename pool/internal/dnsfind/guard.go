package dnsfind

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
)

// Guard decides which addresses found in DNS tether dials. A DNS answer
// is input from outside: forged or from a compromised server, it could
// point client traffic at services on tether's own host (its admin
// listener drains nodes, and needs no token on loopback) or at addresses
// that are not one host. So discovery refuses addresses that are not
// unicast (unspecified, "this network" 0.0.0.0/8, multicast, broadcast),
// link-local ones (cloud metadata services live there), loopback unless
// allowed (--node-dns-allow-loopback), and tether's own listeners always.
// The zero Guard refuses loopback and knows no listener of tether's.
type Guard struct {
	allowLoopback bool
	self          []netip.AddrPort // listeners on one address
	anyPort       []uint16         // ports of listeners on every address (or named by a host name)
	local         []netip.Addr     // this host's interface addresses, when anyPort is set
}

// NewGuard builds a guard that allows loopback addresses or not, and
// refuses tether's own listen addresses self ("HOST:PORT"; a HOST that is
// unspecified or not an IP address stands for every loopback address and
// every address of this host at that port; port 0 or an entry that does
// not parse matches nothing). local are this host's addresses; nil means
// those of its interfaces, read when a listener needs them.
func NewGuard(allowLoopback bool, self []string, local []netip.Addr) Guard {
	g := Guard{allowLoopback: allowLoopback}
	for _, s := range self {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			continue
		}
		pn, err := strconv.ParseUint(port, 10, 16)
		if err != nil || pn == 0 {
			continue // port 0: chosen when listening, unknown here
		}
		if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
			g.self = append(g.self, netip.AddrPortFrom(a.Unmap().WithZone(""), uint16(pn)))
			continue
		}
		g.anyPort = append(g.anyPort, uint16(pn))
	}
	if len(g.anyPort) > 0 {
		if local == nil {
			local = interfaceAddrs()
		}
		g.local = local
	}
	return g
}

// interfaceAddrs returns the addresses of this host's interfaces; none if
// they cannot be read (loopback is covered apart).
func interfaceAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// Refuse returns why tether does not dial ap, or "" when it may.
func (g *Guard) Refuse(ap netip.AddrPort) string {
	a := ap.Addr().Unmap().WithZone("")
	switch {
	case a.IsUnspecified() || a.Is4() && a.As4()[0] == 0:
		return "unspecified"
	case a.IsMulticast():
		return "multicast"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast"
	case !a.IsLoopback() && !a.IsGlobalUnicast():
		return "not unicast"
	}
	if g.isSelf(netip.AddrPortFrom(a, ap.Port())) {
		return "tether's own listener"
	}
	if a.IsLoopback() && !g.allowLoopback {
		return "loopback (--node-dns-allow-loopback is off)"
	}
	return ""
}

// isSelf reports whether ap is one of tether's own listeners.
func (g *Guard) isSelf(ap netip.AddrPort) bool {
	if slices.Contains(g.self, ap) {
		return true
	}
	if !slices.Contains(g.anyPort, ap.Port()) {
		return false
	}
	return ap.Addr().IsLoopback() || slices.Contains(g.local, ap.Addr())
}
