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
	keep := make(map[string]*Node, len(p.nodes))
	for _, n := range p.nodes {
		if !n.Removed() {
			keep[n.Name] = n
		}
	}
	p.conf.Store(&cfg)
	p.gen++
	var added []*Node
	type retiredNode struct {
		n        *Node
		old, now uint32
	}
	var retired []retiredNode
	for _, nc := range cfg.Nodes {
		if old := keep[nc.Name]; old != nil && old.URL == nc.URL {
			delete(keep, nc.Name)
			continue
		}
		n := p.newNode(nc, &cfg)
		p.nodes = append(p.nodes, n)
		added = append(added, n)
	}
	for _, n := range keep { // configured before, not now (or a new URL)
		// Removal is a fact of its own: the node drains whatever its
		// health verdict says, and stays down while that fails.
		old, now := n.change(factRemoved, 0)
		retired = append(retired, retiredNode{n, old, now})
	}
	p.mu.Unlock()
	for _, r := range retired {
		r.n.changed(r.old, r.now, "") // publishes; not under mu
	}
	p.publish()
	for _, n := range added {
		n.log.Info().Msg("node added")
	}
	for _, r := range retired {
		n := r.n
		n.log.Warn().Dur("drain_timeout", cfg.DrainTimeout).Msg("node removed: draining")
		select {
		case n.retire <- struct{}{}:
		default:
		}
	}
	return nil
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
