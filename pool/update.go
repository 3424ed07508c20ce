package pool

import (
	"slices"
	"time"
)

// Update applies a new configuration to a running pool (a reload): nodes
// whose name and URL are unchanged keep their connections, sessions and
// health state; new nodes start up with their own loops; removed nodes (and
// nodes whose URL changed, which are replaced) are drained: they take no new
// sessions, their sticky traffic goes on until DrainTimeout, then their
// WebSockets are told 1001 and they are gone. Timeouts and health settings
// apply from the next use. cfg is checked first; a bad one changes nothing.
// The nodes discovery found stay beside the configured ones (see
// reconcile), and a change of NodeSRV or NodeDNS is looked up at once.
func (p *Pool) Update(cfg Config) error {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	p.mu.Lock()
	if p.close {
		p.mu.Unlock()
		return ErrClosed
	}
	p.conf.Store(&cfg)
	c := p.reconcile(&cfg)
	p.mu.Unlock()
	c.finish(p, cfg.DrainTimeout)
	select {
	case p.redisc <- struct{}{}:
	default:
	}
	return nil
}

// nodeChange is what reconcile did: the nodes it added and those it
// retired, with their facts before and after.
type nodeChange struct {
	added   []*Node
	retired []retiredNode
}

type retiredNode struct {
	n        *Node
	old, now uint32
}

// reconcile makes the pool's nodes the configured ones (cfg.Nodes) and the
// discovered ones (p.found) whose names no configured node has: a
// configured node wins its name. Nodes whose name, URL and address are
// unchanged stay as they are; the others are added, and discovered ones
// start down until their health checks pass; those no longer wanted are
// marked removed. Called under mu; finish does the rest outside it.
func (p *Pool) reconcile(cfg *Config) nodeChange {
	keep := make(map[string]*Node, len(p.nodes))
	for _, n := range p.nodes {
		if !n.Removed() {
			keep[n.Name] = n
		}
	}
	p.gen++
	var c nodeChange
	want := func(nc NodeConfig, found bool) {
		addr := nc.Addr
		if addr == "" {
			_, addr, _ = parseNodeURL(nc.URL)
		}
		if old := keep[nc.Name]; old != nil && old.URL == nc.URL && old.Addr == addr {
			delete(keep, nc.Name)
			return
		}
		n := p.newNode(nc, cfg, found)
		p.nodes = append(p.nodes, n)
		c.added = append(c.added, n)
	}
	configured := make(map[string]bool, len(cfg.Nodes))
	for _, nc := range cfg.Nodes {
		configured[nc.Name] = true
		want(nc, false)
	}
	for _, nc := range p.found {
		if configured[nc.Name] {
			if !p.shadowed[nc.Name] {
				p.shadowed[nc.Name] = true
				p.log.Warn().Str("node", nc.Name).Str("url", nc.URL).Msg("node found in DNS is configured too: the configured one is used")
			}
			continue
		}
		delete(p.shadowed, nc.Name)
		want(nc, true)
	}
	for _, n := range keep { // wanted before, not now (or a new URL or address)
		// Removal is a fact of its own: the node drains whatever its
		// health verdict says, and stays down while that fails.
		old, now := n.change(factRemoved, 0)
		c.retired = append(c.retired, retiredNode{n, old, now})
	}
	return c
}

// finish follows a reconcile, outside mu: it publishes the table, logs the
// nodes added and removed and wakes the removed nodes' evict loops, which
// end them after drain.
func (c nodeChange) finish(p *Pool, drain time.Duration) {
	for _, r := range c.retired {
		r.n.changed(r.old, r.now, "") // publishes; not under mu
	}
	p.publish()
	for _, n := range c.added {
		if n.State() == StateDown {
			n.log.Info().Msg("node added: joins when its health checks pass")
		} else {
			n.log.Info().Msg("node added")
		}
	}
	for _, r := range c.retired {
		n := r.n
		n.log.Warn().Dur("drain_timeout", drain).Msg("node removed: draining")
		select {
		case n.retire <- struct{}{}:
		default:
		}
	}
}

// finishRemoval runs on a removed node's evict loop: after DrainTimeout it
// tells the node's WebSocket clients 1001, closes its remaining connections
// and takes it out of the table for good. Pool.Close ends the wait early.
func (n *Node) finishRemoval() {
	p := n.pool
	t := time.NewTimer(p.cfg().DrainTimeout)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return
	case <-t.C:
	}
	// Gone first: from here Get lends and dials nothing, Put pools nothing
	// and a session that registers is told at once, so what is taken below
	// is all there is.
	n.change(factGone, 0)
	conns, sessions := n.inUse()
	for _, e := range sessions {
		e.Evict(CloseGoingAway)
	}
	for _, c := range conns {
		c.evict()
	}
	p.mu.Lock()
	p.nodes = slices.DeleteFunc(p.nodes, func(m *Node) bool { return m == n })
	p.mu.Unlock()
	p.publish()
	n.closeIdle()
	n.cancel()
	n.log.Info().Int("sessions", len(sessions)).Int("requests", len(conns)).Msg("node removed")
}
