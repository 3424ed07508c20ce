// Package pool is the backend side of tether: the configured nodes, a pool of
// idle keep-alive connections per node, dialing under a connect timeout, and
// the routing table that the request path reads with one atomic load.
//
// Stage: after proxy has chosen a route, pool hands it a connection to the
// node; after the exchange proxy gives the connection back (Put) or closes it.
// The balancer's counts of a node change only through the leases a request
// or a session takes on it and releases once (lease.go).
//
// Nothing here knows HTTP beyond what a health probe needs; nothing a client
// sends can name an address: nodes come only from Config, and from the DNS
// names it lists (discover.go; the queries and their answers are
// internal/dnsfind's).
package pool
