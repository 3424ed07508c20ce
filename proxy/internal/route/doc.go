// Package route chooses the node for a request head: the node named by the
// stickiness cookie (bare, or "<anything>.<name>"), else by the URL
// parameter (percent-decoded), else the balancer's pick from the pool's
// routing table; a name whose node is down fails over to a balanced pick.
// Reason says which of these chose, for the access log.
//
// It reads one published routing table and a parsed request header, and
// allocates nothing: it must never know sockets, bodies, answers or logs.
//
//	r := route.New("gcbSessionServer", "co-browse-node-id")
//	node, why := r.Route(pool.Table(), header, scratch[:])
package route
