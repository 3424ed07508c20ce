// Package admin serves tether's operator endpoints on the admin listener:
// /status (JSON, or a live HTML page), /metrics (Prometheus), /healthz and
// /livez, the node actions POST /nodes/NAME/drain and /nodes/NAME/enable,
// and with --pprof the Go profiler, all behind a guard that checks the Host,
// the bearer token and cross-site requests.
//
// Its one job is to read what tether counts and to relay an operator's
// action to a node. It reads and acts through Server, which proxy.Server
// implements: the nodes (pool.Node's counters and actions), the server's own
// counters, whether tether takes traffic, and the guard's settings.
//
// It must never know the data path: client connections, heads, exchanges,
// splice sessions, the routing decision or tether's Config. It takes no part
// in a request: counting is plain atomics where the traffic is, turned into
// figures only when an operator asks. Nothing outside proxy imports it.
package admin
