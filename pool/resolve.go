package pool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// The DNS side of discovery: queries, and the nodes an SRV or A/AAAA
// answer makes (see discover.go for the loop that asks).

// dnsServers returns the servers to ask: server, or those of
// /etc/resolv.conf.
func dnsServers(server string) ([]string, error) {
	if server != "" {
		return []string{server}, nil
	}
	rc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("read resolver configuration: %w", err)
	}
	if len(rc.Servers) == 0 {
		return nil, errors.New("/etc/resolv.conf names no server")
	}
	out := make([]string, 0, len(rc.Servers))
	for _, s := range rc.Servers {
		out = append(out, net.JoinHostPort(s, rc.Port))
	}
	return out, nil
}

// resolver asks DNS servers in turn, one query at a time under timeout.
type resolver struct {
	servers []string
	timeout time.Duration
	max     int       // nodes one name may yield
	guard   addrGuard // the addresses it may give nodes
}

// answer is what one lookup of a name found.
type answer struct {
	nodes   []NodeConfig
	ttl     uint32   // the smallest TTL of the records used
	skipped []string // records that make no node
	refused []string // addresses tether does not dial, with why (see addrGuard)
	failed  []string // SRV targets whose address lookup failed, with the error
}

// query asks for name's records of type qtype: over UDP with EDNS0, again
// over TCP when the answer was truncated, from each server in turn until
// one answers NOERROR or NXDOMAIN.
func (r *resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(4096, false)
	var err error
	for _, server := range r.servers {
		var a *dns.Msg
		if a, err = r.exchange(ctx, m, server, "udp"); err == nil && a.Truncated {
			a, err = r.exchange(ctx, m, server, "tcp")
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			continue
		}
		if a.Rcode != dns.RcodeSuccess && a.Rcode != dns.RcodeNameError {
			err = fmt.Errorf("%s %s from %s: %s", dns.TypeToString[qtype], name, server, dns.RcodeToString[a.Rcode])
			continue
		}
		return a, nil
	}
	return nil, err
}

// exchange sends m to server over network under the query timeout.
func (r *resolver) exchange(ctx context.Context, m *dns.Msg, server, network string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c := dns.Client{Net: network, Timeout: r.timeout, UDPSize: 4096}
	a, _, err := c.ExchangeContext(ctx, m, server)
	if err != nil {
		return nil, fmt.Errorf("%s %s from %s: %w", dns.TypeToString[m.Question[0].Qtype], m.Question[0].Name, server, err)
	}
	return a, nil
}

// srvNodes looks up s's SRV records and the address of each target.
// Targets are sorted by name and port; past r.max they are ignored.
// Records that make no node (target ".", a first label that is not a valid
// node name, a target without an address tether dials) are in skipped. A
// target whose address lookup fails keeps its node of s's last answer, if
// it had one, and is in failed; the lookup fails only when every target's
// address lookup did.
func (r *resolver) srvNodes(ctx context.Context, s *source) (answer, error) {
	m, err := r.query(ctx, s.name, dns.TypeSRV)
	if err != nil {
		return answer{}, err
	}
	a := answer{ttl: ^uint32(0)}
	var srvs []*dns.SRV
	for _, rr := range m.Answer {
		if srv, ok := rr.(*dns.SRV); ok {
			srvs = append(srvs, srv)
			a.ttl = min(a.ttl, srv.Hdr.Ttl)
		}
	}
	slices.SortFunc(srvs, func(x, y *dns.SRV) int {
		return cmp.Or(cmp.Compare(strings.ToLower(x.Target), strings.ToLower(y.Target)), cmp.Compare(x.Port, y.Port))
	})
	seen := map[string]bool{}
	answered := 0 // targets whose address lookup did not fail
	var lastErr error
	for _, srv := range srvs {
		if len(a.nodes) >= r.max {
			a.skipped = append(a.skipped, fmt.Sprintf("%d records past --node-dns-max-nodes %d", len(srvs)-r.max, r.max))
			break
		}
		target := strings.TrimSuffix(srv.Target, ".")
		label, _, _ := strings.Cut(target, ".")
		if target == "" || seen[label] {
			a.skipped = append(a.skipped, srv.Target)
			continue
		}
		port := strconv.Itoa(int(srv.Port))
		url := s.scheme + "://" + net.JoinHostPort(target, port)
		if validName(label) != nil || srv.Port == 0 {
			a.skipped = append(a.skipped, srv.Target)
			continue
		}
		if _, _, err := parseNodeURL(url); err != nil {
			a.skipped = append(a.skipped, srv.Target)
			continue
		}
		addr, attl, refused, err := r.address(ctx, m, srv.Target, srv.Port)
		a.refused = append(a.refused, refused...)
		if err != nil {
			lastErr = err
			a.failed = append(a.failed, err.Error())
			if nc, ok := r.lastNode(s, label, url); ok {
				seen[label] = true
				a.nodes = append(a.nodes, nc)
			}
			continue
		}
		answered++
		if !addr.IsValid() {
			a.skipped = append(a.skipped, srv.Target)
			continue
		}
		seen[label] = true
		a.ttl = min(a.ttl, attl)
		a.nodes = append(a.nodes, NodeConfig{Name: label, URL: url, Addr: addr.String()})
	}
	if answered == 0 && lastErr != nil {
		return answer{}, fmt.Errorf("address of %d srv targets: %w", len(a.failed), lastErr)
	}
	return a, nil
}

// lastNode returns the node named label with URL url in s's last answer,
// if it had one and its address is still one tether dials.
func (r *resolver) lastNode(s *source, label, url string) (NodeConfig, bool) {
	for _, nc := range s.nodes {
		if nc.Name == label && nc.URL == url {
			ap, err := netip.ParseAddrPort(nc.Addr)
			return nc, err == nil && r.guard.refuse(ap) == ""
		}
	}
	return NodeConfig{}, false
}

// address returns the address of target to dial at port: from the SRV
// answer's additional section when it has one tether dials, else asked for
// (A, then AAAA). IPv4 comes first, then the lowest address, so a target
// with several addresses always gives the same one. The addresses refused
// on the way are returned with why; the zero AddrPort when target has none
// tether dials.
func (r *resolver) address(ctx context.Context, srvAnswer *dns.Msg, target string, port uint16) (netip.AddrPort, uint32, []string, error) {
	var refused []string
	pick := func(addrs []netip.Addr) (netip.AddrPort, bool) {
		for _, a := range addrs {
			ap := netip.AddrPortFrom(a, port)
			why := r.guard.refuse(ap)
			if why == "" {
				return ap, true
			}
			if e := target + " " + ap.String() + ": " + why; !slices.Contains(refused, e) {
				refused = append(refused, e)
			}
		}
		return netip.AddrPort{}, false
	}
	if addrs, ttl := addresses(srvAnswer.Extra, target); len(addrs) > 0 {
		if ap, ok := pick(addrs); ok {
			return ap, ttl, refused, nil
		}
	}
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, err := r.query(ctx, dns.Fqdn(target), qtype)
		if err != nil {
			return netip.AddrPort{}, 0, refused, err
		}
		if addrs, ttl := addresses(a.Answer, ""); len(addrs) > 0 {
			if ap, ok := pick(addrs); ok {
				return ap, ttl, refused, nil
			}
		}
	}
	return netip.AddrPort{}, 0, refused, nil
}

// addresses returns the A and AAAA addresses of rrs (IPv4-mapped ones as
// IPv4), sorted IPv4 first, and their smallest TTL; whether tether dials
// them is for addrGuard. With owner set, only those of that name; "" takes
// every one (the answer to a query for a name, which may hold a CNAME
// chain to its addresses).
func addresses(rrs []dns.RR, owner string) ([]netip.Addr, uint32) {
	ttl := ^uint32(0)
	var out []netip.Addr
	for _, rr := range rrs {
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			ip = v.A
		case *dns.AAAA:
			ip = v.AAAA
		default:
			continue
		}
		if owner != "" && !strings.EqualFold(dns.Fqdn(owner), rr.Header().Name) {
			continue
		}
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		out = append(out, a.Unmap())
		ttl = min(ttl, rr.Header().Ttl)
	}
	slices.SortFunc(out, func(x, y netip.Addr) int {
		if x.Is4() != y.Is4() {
			if x.Is4() {
				return -1
			}
			return 1
		}
		return x.Compare(y)
	})
	return slices.Compact(out), ttl
}

// hostNodes looks up s's A and AAAA records: one node per address tether
// dials, named by the address (':' written '-'), with the URL
// scheme://HOST:PORT and the address dialed. Past r.max addresses the rest
// are ignored.
func (r *resolver) hostNodes(ctx context.Context, s *source) (answer, error) {
	var rrs []dns.RR
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		m, err := r.query(ctx, s.name, qtype)
		if err != nil {
			return answer{}, err
		}
		rrs = append(rrs, m.Answer...)
	}
	var a answer
	addrs, ttl := addresses(rrs, "")
	a.ttl = ttl
	port, _ := strconv.ParseUint(s.port, 10, 16) // checked by parseSource
	url := s.scheme + "://" + net.JoinHostPort(strings.TrimSuffix(s.name, "."), s.port)
	for i, addr := range addrs {
		ap := netip.AddrPortFrom(addr, uint16(port))
		if why := r.guard.refuse(ap); why != "" {
			a.refused = append(a.refused, ap.String()+": "+why)
			continue
		}
		if len(a.nodes) >= r.max {
			a.skipped = append(a.skipped, fmt.Sprintf("%d addresses past --node-dns-max-nodes %d", len(addrs)-i, r.max))
			break
		}
		a.nodes = append(a.nodes, NodeConfig{Name: addrName(addr), URL: url, Addr: ap.String()})
	}
	return a, nil
}

// addrName is the node name of an address found by a NodeDNS lookup: the
// address as written, with '-' for ':' (a valid node name either way).
func addrName(a netip.Addr) string {
	return strings.ReplaceAll(a.WithZone("").String(), ":", "-")
}
