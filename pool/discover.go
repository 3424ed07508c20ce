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
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Discovery: nodes found in DNS beside the configured ones.
//
// A NodeSRV name yields one node per SRV target: named by the target's
// first label (a StatefulSet pod behind a headless Service,
// cobrowse-0.cobrowse.ns.svc.cluster.local, is cobrowse-0, the name it puts
// in its stickiness cookie), with the URL scheme://TARGET:PORT and the
// target's address as the address dialed. A NodeDNS HOST:PORT yields one
// node per A or AAAA address, named by the address (10.0.0.5; an IPv6
// address with '-' for ':'). Priority and weight are not read: every target
// is a node.
//
// The node's identity is its name: a pod that restarts under a new address
// keeps its name, and its node is replaced as a reload replaces a node
// whose URL changed (the old copy drains). Each name is looked up every
// DNSInterval, and not before the TTL of its last answer ends (capped at
// maxTTLWait). A lookup that fails, times out or comes back empty keeps the
// nodes of the name's last good answer: a DNS hiccup never empties the
// routing table.

// httpsPrefix makes the nodes of a NodeSRV or NodeDNS value https nodes.
const httpsPrefix = "https+"

// maxTTLWait caps how long a TTL defers the next lookup of a name, so that
// a record with a TTL of days does not hide new nodes for days.
const maxTTLWait = time.Hour

// lookupBudget is how many DNSTimeouts one name's lookup may take in all
// (an SRV query and the address queries of its targets).
const lookupBudget = 10

// DNSLookups counts the discovery lookups done, one per name looked up, by
// result: OK (nodes found), Error (no answer, a timeout or a server
// failure) and Empty (no record, or none that makes a valid node).
type DNSLookups struct{ OK, Error, Empty uint64 }

// dnsCounts are the counters behind DNSLookups.
type dnsCounts struct{ ok, err, empty atomic.Uint64 }

// DNSLookups returns the discovery lookups done so far, by result.
func (p *Pool) DNSLookups() DNSLookups {
	return DNSLookups{OK: p.dns.ok.Load(), Error: p.dns.err.Load(), Empty: p.dns.empty.Load()}
}

// source is one NodeSRV or NodeDNS value and what its lookups found; owned
// by the discovery loop.
type source struct {
	flag   string // "--node-srv" or "--node-dns"
	spec   string // the value as configured
	scheme string // "http" or "https"
	name   string // the absolute DNS name looked up
	port   string // NodeDNS only: the nodes' port

	nodes  []NodeConfig // the last good answer's nodes
	next   time.Time    // the next lookup is due
	result string       // the last lookup's result: "ok", "error" or "empty"
}

// parseSource reads a NodeSRV value (srv set) or a NodeDNS HOST:PORT value.
func parseSource(spec string, srv bool) (*source, error) {
	s := &source{flag: "--node-dns", spec: spec, scheme: "http"}
	if srv {
		s.flag = "--node-srv"
	}
	rest := spec
	if r, ok := strings.CutPrefix(spec, httpsPrefix); ok {
		s.scheme, rest = "https", r
	}
	host := rest
	if !srv {
		h, port, err := net.SplitHostPort(rest)
		if err != nil {
			return nil, errors.New("want HOST:PORT")
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %q: must be a number from 1 to 65535", port)
		}
		if _, err := netip.ParseAddr(h); err == nil {
			return nil, errors.New("an address is not a DNS name: give it as --node NAME=URL")
		}
		host, s.port = h, port
	}
	if host == "" || len(host) > 253 {
		return nil, errors.New("want a DNS name")
	}
	if _, ok := dns.IsDomainName(host); !ok || strings.ContainsFunc(host, notNameChar) || strings.Contains(host, "..") {
		return nil, fmt.Errorf("%q is not a DNS name (letters, digits and -_. only)", host)
	}
	s.name = dns.Fqdn(host)
	return s, nil
}

// HasHTTPS reports whether any node may be an https node: a configured
// https URL, or a NodeSRV or NodeDNS value with the "https+" prefix.
func (c *Config) HasHTTPS() bool {
	for _, n := range c.Nodes {
		if strings.HasPrefix(n.URL, "https:") {
			return true
		}
	}
	for _, v := range slices.Concat(c.NodeSRV, c.NodeDNS) {
		if strings.HasPrefix(v, httpsPrefix) {
			return true
		}
	}
	return false
}

// notNameChar reports a character that has no place in the DNS names
// tether looks up: letters, digits, '-', '_' (SRV labels) and '.' only.
func notNameChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
}

// validateDiscovery checks the discovery settings, naming their flags.
func (c *Config) validateDiscovery() error {
	for i, v := range c.NodeSRV {
		if _, err := parseSource(v, true); err != nil {
			return fmt.Errorf("--node-srv %s: %w", v, err)
		}
		if slices.Contains(c.NodeSRV[:i], v) {
			return fmt.Errorf("--node-srv %s: given twice", v)
		}
	}
	for i, v := range c.NodeDNS {
		if _, err := parseSource(v, false); err != nil {
			return fmt.Errorf("--node-dns %s: %w", v, err)
		}
		if slices.Contains(c.NodeDNS[:i], v) {
			return fmt.Errorf("--node-dns %s: given twice", v)
		}
	}
	switch {
	case c.DNSInterval < 0:
		return fmt.Errorf("--node-dns-interval %s: must not be negative", c.DNSInterval)
	case c.DNSTimeout < 0:
		return fmt.Errorf("--dns-timeout %s: must not be negative", c.DNSTimeout)
	case c.DNSMaxNodes < 0 || c.DNSMaxNodes > 100000:
		return fmt.Errorf("--node-dns-max-nodes %d: must be from 1 to 100000 (0: 1000)", c.DNSMaxNodes)
	}
	if c.DNSServer != "" {
		if _, err := netip.ParseAddrPort(c.DNSServer); err != nil {
			return fmt.Errorf("--dns-server %q: want IP:PORT (127.0.0.1:53, [::1]:53)", c.DNSServer)
		}
	}
	return nil
}

// sources returns the sources cfg names, in its order (NodeSRV, then
// NodeDNS): those known already from have keep their answers and schedule.
func (c *Config) sources(have map[string]*source) []*source {
	var out []*source
	add := func(spec string, srv bool) {
		key := "srv " + spec
		if !srv {
			key = "dns " + spec
		}
		if s := have[key]; s != nil {
			out = append(out, s)
			return
		}
		s, err := parseSource(spec, srv)
		if err != nil {
			return // Validate refused it before
		}
		have[key] = s
		out = append(out, s)
	}
	for _, v := range c.NodeSRV {
		add(v, true)
	}
	for _, v := range c.NodeDNS {
		add(v, false)
	}
	return out
}

// discoverLoop looks the configured names up when they are due and hands
// the nodes found to the pool (setFound) when they change. A reload wakes
// it (redisc): names it added are looked up at once, names it dropped lose
// their nodes.
func (p *Pool) discoverLoop() {
	have := map[string]*source{}
	warned := map[string]bool{} // names found twice, logged once
	var last []NodeConfig
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-timer.C:
		case <-p.redisc:
		}
		cfg := p.cfg()
		srcs := cfg.sources(have)
		for k, s := range have {
			if !slices.Contains(srcs, s) {
				delete(have, k)
			}
		}
		now := time.Now()
		for _, s := range srcs {
			if !now.Before(s.next) {
				p.lookupSource(cfg, s)
				if p.ctx.Err() != nil {
					return
				}
			}
		}
		found := mergeFound(srcs, warned, p)
		if !slices.Equal(found, last) {
			last = found
			p.setFound(found)
		}
		if len(srcs) == 0 {
			timer.Stop()
			continue
		}
		next := srcs[0].next
		for _, s := range srcs[1:] {
			if s.next.Before(next) {
				next = s.next
			}
		}
		timer.Reset(max(time.Until(next), 0))
	}
}

// mergeFound joins the sources' nodes in order; a name found twice keeps
// its first node (logged once per name).
func mergeFound(srcs []*source, warned map[string]bool, p *Pool) []NodeConfig {
	var out []NodeConfig
	seen := map[string]string{}
	for _, s := range srcs {
		for _, nc := range s.nodes {
			if first, dup := seen[nc.Name]; dup {
				if !warned[nc.Name] {
					warned[nc.Name] = true
					p.log.Warn().Str("node", nc.Name).Str("name", s.spec).Str("first", first).Msg("node name found twice in DNS: the first is used")
				}
				continue
			}
			seen[nc.Name] = s.spec
			out = append(out, nc)
		}
	}
	return out
}

// setFound makes found the discovered nodes and reconciles the pool with
// them: new ones start down and join after their health checks, those gone
// drain as a reload's removals do.
func (p *Pool) setFound(found []NodeConfig) {
	p.mu.Lock()
	if p.close {
		p.mu.Unlock()
		return
	}
	p.found = found
	cfg := p.cfg()
	c := p.reconcile(cfg)
	p.mu.Unlock()
	c.finish(p, cfg.DrainTimeout)
}

// lookupSource looks s up once, under lookupBudget DNSTimeouts, and
// schedules its next lookup: after DNSInterval, or after the answer's TTL
// when that is longer. An error or an empty answer keeps s's nodes.
func (p *Pool) lookupSource(cfg *Config, s *source) {
	ctx, cancel := context.WithTimeout(p.ctx, lookupBudget*cfg.DNSTimeout)
	defer cancel()
	r := resolver{timeout: cfg.DNSTimeout, max: cfg.DNSMaxNodes}
	var nodes []NodeConfig
	var ttl uint32
	var skipped []string
	var err error
	if r.servers, err = dnsServers(cfg.DNSServer); err == nil {
		if s.port == "" {
			nodes, ttl, skipped, err = r.srvNodes(ctx, s)
		} else {
			nodes, ttl, skipped, err = r.hostNodes(ctx, s)
		}
	}
	if p.ctx.Err() != nil {
		return
	}
	wait := cfg.DNSInterval
	result := "ok"
	switch {
	case err != nil:
		result = "error"
		p.dns.err.Add(1)
	case len(nodes) == 0:
		result = "empty"
		p.dns.empty.Add(1)
	default:
		p.dns.ok.Add(1)
		s.nodes = nodes
		wait = max(wait, min(time.Duration(ttl)*time.Second, maxTTLWait))
	}
	s.next = time.Now().Add(wait)
	if len(skipped) > 0 && p.log.Debug().Enabled() {
		p.log.Debug().Str("name", s.spec).Strs("skipped", skipped).Msg("dns records that make no node")
	}
	if result == s.result {
		return
	}
	was := s.result
	s.result = result
	switch result {
	case "error":
		p.log.Warn().Str("flag", s.flag).Str("name", s.spec).Err(err).Int("kept", len(s.nodes)).Msg("dns lookup failed: nodes kept")
	case "empty":
		p.log.Warn().Str("flag", s.flag).Str("name", s.spec).Strs("skipped", skipped).Int("kept", len(s.nodes)).Msg("dns lookup found no node: nodes kept")
	default:
		if was != "" {
			p.log.Info().Str("flag", s.flag).Str("name", s.spec).Int("nodes", len(nodes)).Msg("dns lookup answered again")
		}
	}
}

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
	max     int // nodes one name may yield
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
// node name, a target without an address) are returned in skipped.
func (r *resolver) srvNodes(ctx context.Context, s *source) (nodes []NodeConfig, ttl uint32, skipped []string, err error) {
	a, err := r.query(ctx, s.name, dns.TypeSRV)
	if err != nil {
		return nil, 0, nil, err
	}
	ttl = ^uint32(0)
	var srvs []*dns.SRV
	for _, rr := range a.Answer {
		if srv, ok := rr.(*dns.SRV); ok {
			srvs = append(srvs, srv)
			ttl = min(ttl, srv.Hdr.Ttl)
		}
	}
	slices.SortFunc(srvs, func(x, y *dns.SRV) int {
		return cmp.Or(cmp.Compare(strings.ToLower(x.Target), strings.ToLower(y.Target)), cmp.Compare(x.Port, y.Port))
	})
	seen := map[string]bool{}
	for _, srv := range srvs {
		if len(nodes) >= r.max {
			skipped = append(skipped, fmt.Sprintf("%d records past --node-dns-max-nodes %d", len(srvs)-r.max, r.max))
			break
		}
		target := strings.TrimSuffix(srv.Target, ".")
		label, _, _ := strings.Cut(target, ".")
		if target == "" || seen[label] {
			skipped = append(skipped, srv.Target)
			continue
		}
		if validName(label) != nil {
			skipped = append(skipped, srv.Target)
			continue
		}
		addr, attl, err := r.address(ctx, a, srv.Target)
		if err != nil {
			return nil, 0, nil, err
		}
		if !addr.IsValid() {
			skipped = append(skipped, srv.Target)
			continue
		}
		port := strconv.Itoa(int(srv.Port))
		nc := NodeConfig{Name: label, URL: s.scheme + "://" + net.JoinHostPort(target, port), Addr: net.JoinHostPort(addr.String(), port)}
		if _, _, err := parseNodeURL(nc.URL); err != nil || srv.Port == 0 {
			skipped = append(skipped, srv.Target)
			continue
		}
		seen[label] = true
		ttl = min(ttl, attl)
		nodes = append(nodes, nc)
	}
	return nodes, ttl, skipped, nil
}

// address returns target's address: from the SRV answer's additional
// section when it is there, else asked for (A, then AAAA). IPv4 comes
// first, then the lowest address, so a target with several addresses
// always gives the same one. The zero Addr when target has none.
func (r *resolver) address(ctx context.Context, srvAnswer *dns.Msg, target string) (netip.Addr, uint32, error) {
	if addrs, ttl := addresses(srvAnswer.Extra, target); len(addrs) > 0 {
		return addrs[0], ttl, nil
	}
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, err := r.query(ctx, dns.Fqdn(target), qtype)
		if err != nil {
			return netip.Addr{}, 0, err
		}
		if addrs, ttl := addresses(a.Answer, ""); len(addrs) > 0 {
			return addrs[0], ttl, nil
		}
	}
	return netip.Addr{}, 0, nil
}

// addresses returns the usable A and AAAA addresses of rrs (unicast or
// loopback), sorted IPv4 first, and their smallest TTL. With owner set,
// only those of that name; "" takes every one (the answer to a query for a
// name, which may hold a CNAME chain to its addresses).
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
		if a = a.Unmap(); !ok || !(a.IsGlobalUnicast() || a.IsLoopback()) {
			continue
		}
		out = append(out, a)
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

// hostNodes looks up s's A and AAAA records: one node per address, named
// by the address (':' written '-'), with the URL scheme://HOST:PORT and the
// address dialed. Past r.max addresses the rest are ignored.
func (r *resolver) hostNodes(ctx context.Context, s *source) (nodes []NodeConfig, ttl uint32, skipped []string, err error) {
	var rrs []dns.RR
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, err := r.query(ctx, s.name, qtype)
		if err != nil {
			return nil, 0, nil, err
		}
		rrs = append(rrs, a.Answer...)
	}
	addrs, ttl := addresses(rrs, "")
	url := s.scheme + "://" + net.JoinHostPort(strings.TrimSuffix(s.name, "."), s.port)
	for i, a := range addrs {
		if i >= r.max {
			skipped = append(skipped, fmt.Sprintf("%d addresses past --node-dns-max-nodes %d", len(addrs)-r.max, r.max))
			break
		}
		nodes = append(nodes, NodeConfig{Name: addrName(a), URL: url, Addr: net.JoinHostPort(a.String(), s.port)})
	}
	return nodes, ttl, skipped, nil
}

// addrName is the node name of an address found by a NodeDNS lookup: the
// address as written, with '-' for ':' (a valid node name either way).
func addrName(a netip.Addr) string {
	return strings.ReplaceAll(a.WithZone("").String(), ":", "-")
}
