package pool

// The balancer's counts of a node (what Table.Pick compares, what the status
// page shows) are changed only here: a request or a session takes a lease on
// its node and gives it back once. A lease is a value the caller keeps (on
// its stack, in its session record): taking one allocates nothing.

// Lease is one HTTP request's share of its node's counts: one active, one in
// flight, from Acquire to Release. The zero Lease holds nothing. A Lease must
// not be copied (go vet says so): Release through the one copy.
type Lease struct {
	_ noCopy
	n *Node
}

// Acquire counts one request on n until the lease is released.
func (n *Node) Acquire() Lease {
	n.active.Add(1)
	n.inFlight.Add(1)
	return Lease{n: n}
}

// Release gives the lease's counts back. Only the first call counts: the
// lease then holds nothing, so a second Release changes no count.
func (l *Lease) Release() {
	n := l.n
	if n == nil {
		return
	}
	l.n = nil
	n.inFlight.Add(-1)
	n.active.Add(-1)
}

// SessionLease is one spliced session's share of its node's counts: one
// active, one session, from AcquireSession to Release, which the session's
// end calls. The zero SessionLease holds nothing. It is one pointer, so the
// session's record grows by nothing when it holds its node through it. It
// must not be copied.
type SessionLease struct {
	_ noCopy
	n *Node
}

// AcquireSession counts one spliced session on n until the lease is
// released.
func (n *Node) AcquireSession() SessionLease {
	n.active.Add(1)
	n.spliced.Add(1)
	return SessionLease{n: n}
}

// Node is the node the lease counts on; nil once released.
func (l *SessionLease) Node() *Node { return l.n }

// Release gives the session's counts back. Only the first call counts.
func (l *SessionLease) Release() {
	n := l.n
	if n == nil {
		return
	}
	l.n = nil
	n.active.Add(-1)
	n.spliced.Add(-1)
}

// Active is the node's requests in flight plus its spliced sessions: what
// the balancer compares.
func (n *Node) Active() int64 { return n.active.Load() }

// InFlight is the node's HTTP requests waiting for or receiving an answer.
func (n *Node) InFlight() int64 { return n.inFlight.Load() }

// Sessions is the node's spliced WebSocket sessions open now.
func (n *Node) Sessions() int64 { return n.spliced.Load() }

// noCopy makes go vet's copylocks check refuse copies of the struct that
// holds it (a copied lease could be released twice).
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
