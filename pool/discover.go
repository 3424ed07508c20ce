package pool

import (
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

	"github.com/tether-lb/tether/pool/internal/dnsfind"
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
// routing table; an SRV target whose own address lookup fails keeps its
// last node. Addresses that tether does not dial (dnsfind.Guard: loopback
// unless DNSAllowLoopback, tether's own listeners, anything not one host's
// unicast) make no node. The queries and the nodes an answer makes are
// package dnsfind's; this file schedules, merges, counts and logs.

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
// failure) and Empty (no record, or none that makes a valid node). Beside
// them, Refused counts the addresses answers gave that tether does not
// dial (see Config.DNSAllowLoopback and Config.SelfAddrs), and
// TargetErrors the SRV targets whose address lookup failed while another
// target's did not (the target was skipped, or kept its last address).
type DNSLookups struct{ OK, Error, Empty, Refused, TargetErrors uint64 }

// dnsCounts are the counters behind DNSLookups.
type dnsCounts struct{ ok, err, empty, refused, targetErr atomic.Uint64 }

// DNSLookups returns the discovery lookups done so far, by result.
func (p *Pool) DNSLookups() DNSLookups {
	return DNSLookups{
		OK: p.dns.ok.Load(), Error: p.dns.err.Load(), Empty: p.dns.empty.Load(),
		Refused: p.dns.refused.Load(), TargetErrors: p.dns.targetErr.Load(),
	}
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

	refusing bool // the last answer named addresses tether does not dial (logged when it starts)
	failing  bool // the last lookup had SRV targets whose address lookup failed (logged when it starts)
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
	name, err := dnsfind.QueryName(host)
	if err != nil {
		return nil, err
	}
	s.name = name
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
	warned := map[string]bool{} // names the current answer gives twice, logged once (see mergeFound)
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
// its first node. warned holds the names this answer gives twice: a name is
// logged when it joins, and forgotten once an answer no longer gives it
// twice, so the set never holds more than one answer's names.
func mergeFound(srcs []*source, warned map[string]bool, p *Pool) []NodeConfig {
	var out []NodeConfig
	seen := map[string]string{}
	var dups map[string]bool
	for _, s := range srcs {
		for _, nc := range s.nodes {
			if first, dup := seen[nc.Name]; dup {
				if dups == nil {
					dups = map[string]bool{}
				}
				dups[nc.Name] = true
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
	for name := range warned {
		if !dups[name] {
			delete(warned, name)
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
	r := dnsfind.Resolver{
		Timeout: cfg.DNSTimeout, Max: cfg.DNSMaxNodes, Valid: validNode,
		Guard: dnsfind.NewGuard(cfg.DNSAllowLoopback, cfg.SelfAddrs, nil),
	}
	var a dnsfind.Answer
	var err error
	if r.Servers, err = dnsfind.Servers(cfg.DNSServer); err == nil {
		if s.port == "" {
			last := make([]dnsfind.Node, len(s.nodes)) // the same fields as NodeConfig
			for i, nc := range s.nodes {
				last[i] = dnsfind.Node(nc)
			}
			a, err = r.SRV(ctx, s.name, s.scheme, last)
		} else {
			a, err = r.Hosts(ctx, s.name, s.scheme, s.port)
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
	case len(a.Nodes) == 0:
		result = "empty"
		p.dns.empty.Add(1)
	default:
		p.dns.ok.Add(1)
		s.nodes = make([]NodeConfig, len(a.Nodes))
		for i, n := range a.Nodes {
			s.nodes[i] = NodeConfig(n)
		}
		wait = max(wait, min(time.Duration(a.TTL)*time.Second, maxTTLWait))
	}
	s.next = time.Now().Add(wait)
	p.noteAnswer(s, a, err)
	if result == s.result {
		return
	}
	was := s.result
	s.result = result
	switch result {
	case "error":
		p.log.Warn().Str("flag", s.flag).Str("name", s.spec).Err(err).Int("kept", len(s.nodes)).Msg("dns lookup failed: nodes kept")
	case "empty":
		p.log.Warn().Str("flag", s.flag).Str("name", s.spec).Strs("skipped", a.Skipped).Strs("refused", logList(a.Refused)).Int("kept", len(s.nodes)).Msg("dns lookup found no node: nodes kept")
	default:
		if was != "" {
			p.log.Info().Str("flag", s.flag).Str("name", s.spec).Int("nodes", len(a.Nodes)).Msg("dns lookup answered again")
		}
	}
}

// noteAnswer counts and logs what a lookup of s skipped: records that make
// no node (Debug), addresses refused and SRV targets whose address lookup
// failed (counted; a Warn when they start for s, an Info when they end,
// Debug between, so a name that keeps giving them does not flood the log).
func (p *Pool) noteAnswer(s *source, a dnsfind.Answer, err error) {
	if len(a.Skipped) > 0 && p.log.Debug().Enabled() {
		p.log.Debug().Str("name", s.spec).Strs("skipped", a.Skipped).Msg("dns records that make no node")
	}
	if err != nil {
		return // nothing is known of the answer's addresses
	}
	p.dns.refused.Add(uint64(len(a.Refused)))
	p.dns.targetErr.Add(uint64(len(a.Failed)))
	s.refusing = p.noteTrouble(s, s.refusing, "refused", a.Refused,
		"dns answer names addresses tether does not dial: refused",
		"dns answer names no refused address any more",
		"dns addresses refused")
	s.failing = p.noteTrouble(s, s.failing, "targets", a.Failed,
		"dns address lookup of srv targets failed: skipped, or kept at their last address",
		"dns address lookups of srv targets answer again",
		"dns address lookup of srv targets failed")
}

// noteTrouble logs one kind of trouble in s's answers, listed in items
// under key: a Warn when it starts (was is false), an Info when it ends,
// Debug while it goes on. It reports whether the trouble is there now.
func (p *Pool) noteTrouble(s *source, was bool, key string, items []string, starts, ends, goesOn string) bool {
	now := len(items) > 0
	switch {
	case now && !was:
		p.log.Warn().Str("flag", s.flag).Str("name", s.spec).Strs(key, logList(items)).Int("count", len(items)).Msg(starts)
	case !now && was:
		p.log.Info().Str("flag", s.flag).Str("name", s.spec).Msg(ends)
	case now && p.log.Debug().Enabled():
		p.log.Debug().Str("name", s.spec).Strs(key, logList(items)).Msg(goesOn)
	}
	return now
}

// validNode reports whether a node named name with URL url is one the
// pool takes (a discovered SRV target that is not makes no node).
func validNode(name, url string) bool {
	_, _, err := parseNodeURL(url)
	return validName(name) == nil && err == nil
}

// logList caps a list for one log line at its first 10 entries.
func logList(l []string) []string {
	if len(l) > 10 {
		return append(l[:10:10], fmt.Sprintf("and %d more", len(l)-10))
	}
	return l
}
