// Package dnsfind is the DNS side of tether's node discovery: it asks DNS
// servers (those of /etc/resolv.conf, or --dns-server) under a timeout per
// query, again over TCP when an answer was truncated, and turns an SRV
// answer or a name's A/AAAA records into candidate nodes: a name (an SRV
// target's first label, or the address), a URL, the address dialed, and
// the TTL that defers the next lookup. Guard refuses the addresses tether
// must not dial: not one host's unicast, link-local, loopback unless
// allowed, and tether's own listeners.
//
// It knows DNS and nothing of the pool: not its nodes, routing table,
// health states or counters, nor when a name is looked up again. pool's
// discovery loop schedules the lookups and merges what they find.
package dnsfind
