package pool

import "time"

// NodeFacts are one node's facts that outlive a process: its health verdict
// and the operator's drain. A new tether seeded with them (Config.Seed)
// starts each node as the old one had it, so nothing flaps when the binary
// is replaced. A node is known by its name and URL.
type NodeFacts struct {
	Name    string
	URL     string
	Down    bool      // failing: takes nothing until its health checks pass
	Drained bool      // drained by the operator (POST /nodes/NAME/drain)
	Since   time.Time // when it entered its state
}

// Facts returns the facts of the pool's nodes, in order. Nodes a reload
// removed are left out: they drain in this process and are no node of
// the next.
func (p *Pool) Facts() []NodeFacts {
	var out []NodeFacts
	for _, n := range p.nodeList() {
		f := n.facts.Load()
		if f&(factRemoved|factGone) != 0 {
			continue
		}
		out = append(out, NodeFacts{
			Name:    n.Name,
			URL:     n.URL,
			Down:    f&factDown != 0,
			Drained: f&factDrained != 0,
			Since:   n.Since(),
		})
	}
	return out
}

// seed sets n's facts from the seed of the same name and URL, if any, and
// consumes it: a seed applies to the first node of its name only (a node
// removed and added again later starts afresh). Called under p.mu.
func (p *Pool) seed(n *Node) {
	s, ok := p.seeds[n.Name]
	if !ok || s.URL != n.URL {
		return
	}
	delete(p.seeds, n.Name)
	var f uint64
	if s.Down {
		f |= factDown
	}
	if s.Drained {
		f |= factDrained
	}
	n.facts.Store(f)
	if !s.Since.IsZero() {
		n.since.Store(s.Since.UnixNano())
	}
}
