// Package bench is tether's harness: a fake co-browse node that speaks the
// protocol of DESIGN.md (health and its switch, the stickiness cookie rules,
// customer/agent relay and echo WebSockets, long polls, resources of N bytes)
// and load generators that drive it through a proxy and report per node.
package bench
