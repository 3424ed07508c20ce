package dnsfind

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

// Servers returns the servers to ask: server, or those of
// /etc/resolv.conf.
func Servers(server string) ([]string, error) {
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

// Resolver asks DNS servers in turn, one query at a time under Timeout.
// Its methods only read it: one value may serve lookups at once.
type Resolver struct {
	Servers []string      // asked in turn (see Servers)
	Timeout time.Duration // bounds one query
	Max     int           // nodes one name may yield (--node-dns-max-nodes)
	Guard   Guard         // the addresses it may give nodes
	// Valid reports whether a node named name with URL url is one tether
	// takes; an SRV target that makes no such node is skipped. Nil takes
	// every one.
	Valid func(name, url string) bool
}

// Node is a node an answer makes: its name, its URL
// (scheme://HOST:PORT, HOST the name looked up) and the address dialed
// (IP:PORT).
type Node struct{ Name, URL, Addr string }

// Answer is what one lookup of a name found.
type Answer struct {
	Nodes   []Node
	TTL     uint32   // the smallest TTL of the records used
	Skipped []string // records that make no node
	Refused []string // addresses tether does not dial, with why (see Guard)
	Failed  []string // SRV targets whose address lookup failed, with the error
}

// QueryName returns host as the absolute name tether asks for, or why it
// is not a DNS name tether looks up.
func QueryName(host string) (string, error) {
	if host == "" || len(host) > 253 {
		return "", errors.New("want a DNS name")
	}
	if _, ok := dns.IsDomainName(host); !ok || strings.ContainsFunc(host, notNameChar) || strings.Contains(host, "..") {
		return "", fmt.Errorf("%q is not a DNS name (letters, digits and -_. only)", host)
	}
	return dns.Fqdn(host), nil
}

// notNameChar reports a character that has no place in the DNS names
// tether looks up: letters, digits, '-', '_' (SRV labels) and '.' only.
func notNameChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
}

// query asks for name's records of type qtype: over UDP with EDNS0, again
// over TCP when the answer was truncated, from each server in turn until
// one answers NOERROR or NXDOMAIN.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(4096, false)
	var err error
	for _, server := range r.Servers {
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
func (r *Resolver) exchange(ctx context.Context, m *dns.Msg, server, network string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	c := dns.Client{Net: network, Timeout: r.Timeout, UDPSize: 4096}
	a, _, err := c.ExchangeContext(ctx, m, server)
	if err != nil {
		return nil, fmt.Errorf("%s %s from %s: %w", dns.TypeToString[m.Question[0].Qtype], m.Question[0].Name, server, err)
	}
	return a, nil
}

// SRV looks up the SRV records of name (absolute, see QueryName) and the
// address of each target: one node per target, named by the target's
// first label, with the URL scheme://TARGET:PORT. Targets are sorted by
// name and port; past r.Max they are ignored. Records that make no node
// (target ".", a first label or URL that r.Valid refuses, a target without
// an address tether dials) are in Skipped. A target whose address lookup
// fails keeps its node of last (the name's last answer), if it had one,
// and is in Failed; the lookup fails only when every target's address
// lookup did.
func (r *Resolver) SRV(ctx context.Context, name, scheme string, last []Node) (Answer, error) {
	m, err := r.query(ctx, name, dns.TypeSRV)
	if err != nil {
		return Answer{}, err
	}
	a := Answer{TTL: ^uint32(0)}
	var srvs []*dns.SRV
	for _, rr := range m.Answer {
		if srv, ok := rr.(*dns.SRV); ok {
			srvs = append(srvs, srv)
			a.TTL = min(a.TTL, srv.Hdr.Ttl)
		}
	}
	slices.SortFunc(srvs, func(x, y *dns.SRV) int {
		return cmp.Or(cmp.Compare(strings.ToLower(x.Target), strings.ToLower(y.Target)), cmp.Compare(x.Port, y.Port))
	})
	seen := map[string]bool{}
	answered := 0 // targets whose address lookup did not fail
	var lastErr error
	for _, srv := range srvs {
		if len(a.Nodes) >= r.Max {
			a.Skipped = append(a.Skipped, fmt.Sprintf("%d records past --node-dns-max-nodes %d", len(srvs)-r.Max, r.Max))
			break
		}
		target := strings.TrimSuffix(srv.Target, ".")
		label, _, _ := strings.Cut(target, ".")
		if target == "" || seen[label] {
			a.Skipped = append(a.Skipped, srv.Target)
			continue
		}
		port := strconv.Itoa(int(srv.Port))
		url := scheme + "://" + net.JoinHostPort(target, port)
		if srv.Port == 0 || r.Valid != nil && !r.Valid(label, url) {
			a.Skipped = append(a.Skipped, srv.Target)
			continue
		}
		addr, attl, refused, err := r.address(ctx, m, srv.Target, srv.Port)
		a.Refused = append(a.Refused, refused...)
		if err != nil {
			lastErr = err
			a.Failed = append(a.Failed, err.Error())
			if n, ok := r.lastNode(last, label, url); ok {
				seen[label] = true
				a.Nodes = append(a.Nodes, n)
			}
			continue
		}
		answered++
		if !addr.IsValid() {
			a.Skipped = append(a.Skipped, srv.Target)
			continue
		}
		seen[label] = true
		a.TTL = min(a.TTL, attl)
		a.Nodes = append(a.Nodes, Node{Name: label, URL: url, Addr: addr.String()})
	}
	if answered == 0 && lastErr != nil {
		return Answer{}, fmt.Errorf("address of %d srv targets: %w", len(a.Failed), lastErr)
	}
	return a, nil
}

// lastNode returns the node named label with URL url in last, if it has
// one and its address is still one tether dials.
func (r *Resolver) lastNode(last []Node, label, url string) (Node, bool) {
	for _, n := range last {
		if n.Name == label && n.URL == url {
			ap, err := netip.ParseAddrPort(n.Addr)
			return n, err == nil && r.Guard.Refuse(ap) == ""
		}
	}
	return Node{}, false
}

// address returns the address of target to dial at port: from the SRV
// answer's additional section when it has one tether dials, else asked for
// (A, then AAAA). IPv4 comes first, then the lowest address, so a target
// with several addresses always gives the same one. The addresses refused
// on the way are returned with why; the zero AddrPort when target has none
// tether dials.
func (r *Resolver) address(ctx context.Context, srvAnswer *dns.Msg, target string, port uint16) (netip.AddrPort, uint32, []string, error) {
	var refused []string
	pick := func(addrs []netip.Addr) (netip.AddrPort, bool) {
		for _, a := range addrs {
			ap := netip.AddrPortFrom(a, port)
			why := r.Guard.Refuse(ap)
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
// them is for Guard. With owner set, only those of that name; "" takes
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

// Hosts looks up the A and AAAA records of name (absolute, see
// QueryName): one node per address tether dials, named by the address
// (AddrName), with the URL scheme://NAME:PORT and the address dialed.
// port is a number from 1 to 65535, checked by the caller. Past r.Max
// addresses the rest are ignored.
func (r *Resolver) Hosts(ctx context.Context, name, scheme, port string) (Answer, error) {
	var rrs []dns.RR
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		m, err := r.query(ctx, name, qtype)
		if err != nil {
			return Answer{}, err
		}
		rrs = append(rrs, m.Answer...)
	}
	var a Answer
	addrs, ttl := addresses(rrs, "")
	a.TTL = ttl
	pn, _ := strconv.ParseUint(port, 10, 16) // checked by the caller
	url := scheme + "://" + net.JoinHostPort(strings.TrimSuffix(name, "."), port)
	for i, addr := range addrs {
		ap := netip.AddrPortFrom(addr, uint16(pn))
		if why := r.Guard.Refuse(ap); why != "" {
			a.Refused = append(a.Refused, ap.String()+": "+why)
			continue
		}
		if len(a.Nodes) >= r.Max {
			a.Skipped = append(a.Skipped, fmt.Sprintf("%d addresses past --node-dns-max-nodes %d", len(addrs)-i, r.Max))
			break
		}
		a.Nodes = append(a.Nodes, Node{Name: AddrName(addr), URL: url, Addr: ap.String()})
	}
	return a, nil
}

// AddrName is the node name of an address found by Hosts: the address as
// written, with '-' for ':' (a valid node name either way).
func AddrName(a netip.Addr) string {
	return strings.ReplaceAll(a.WithZone("").String(), ":", "-")
}
