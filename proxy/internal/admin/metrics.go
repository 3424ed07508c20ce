package admin

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tether-lb/tether/pool"
)

// Metrics are kept as plain atomics where the traffic is (pool.Node's
// counters, the server's Counters) and turned into Prometheus metrics only when
// /metrics is scraped: counting takes no lock and allocates nothing on the
// request path. prometheus/client_golang does the exposition format.

// refusedConnsDesc counts connections tether closed at accept, by reason.
var refusedConnsDesc = prometheus.NewDesc("tether_refused_connections_total",
	"Client connections closed at accept without a request read, by reason (max_conns: --max-conns reached; proxy_protocol: a missing, malformed or untrusted PROXY protocol header).", []string{"reason"}, nil)

// dnsLookupsDesc counts the lookups of --node-srv and --node-dns names.
var dnsLookupsDesc = prometheus.NewDesc("tether_dns_lookups_total",
	"Lookups of --node-srv and --node-dns names, by result: ok (nodes found), error (no answer, timeout, server failure), empty (no usable record); error and empty keep the last nodes.", []string{"result"}, nil)

// dnsSkippedDesc counts what answers gave that made no node.
var dnsSkippedDesc = prometheus.NewDesc("tether_dns_skipped_total",
	"What DNS answers gave that made no node, by reason: refused_address (loopback without --node-dns-allow-loopback, unspecified, link-local, multicast, or tether's own listener), target_error (an SRV target whose address lookup failed while others did not).", []string{"reason"}, nil)

// The older processes still serving after a hand-over, by PID: each
// process's series end when it exits.
var (
	predConnsDesc = prometheus.NewDesc("tether_predecessor_connections",
		"Client connections (sessions not included) still open in an older tether process that handed over to this one, by its pid.", []string{"pid"}, nil)
	predSessionsDesc = prometheus.NewDesc("tether_predecessor_sessions",
		"WebSocket sessions still running in an older tether process that handed over to this one (those that could not move: TLS ones among them), by its pid.", []string{"pid"}, nil)
	predTLSSessionsDesc = prometheus.NewDesc("tether_predecessor_tls_sessions",
		"Of tether_predecessor_sessions, those over TLS, by pid.", []string{"pid"}, nil)
	predInFlightDesc = prometheus.NewDesc("tether_predecessor_requests_in_flight",
		"Requests an older tether process that handed over to this one is still answering, by its pid.", []string{"pid"}, nil)
)

// collector exposes a Server's counters to Prometheus.
//
// A reload that removes a node, or changes its URL, leaves the old copy in
// the table while it drains, beside its successor of the same name. The live
// copy keeps the node's series as they were ({node="CB_Server_2"}), so they
// go on without a gap; a removed copy is reported with one more label,
// generation, the reload that had built it (pool.Node.Generation), so its
// series are distinct from its successor's and from any other removed copy
// of the name. Metrics of one name then differ in their label names, which
// the exposition format and Prometheus allow; the collector is unchecked
// (Describe sends nothing) because client_golang's registration insists on
// one set of label names per metric name.
type collector struct {
	srv Server

	live, removed nodeDescs // per-node metrics of live nodes and of removed copies

	clientConns, refused      *prometheus.Desc
	handshakes, handshakesNow *prometheus.Desc
}

// nodeDescs are the per-node metric descriptions.
type nodeDescs struct {
	requests, bytes, sessions, inFlight, state        *prometheus.Desc
	connect, head, failovers, evictions, hits, misses *prometheus.Desc
}

var _ prometheus.Collector = (*collector)(nil)

// newNodeDescs describes the per-node metrics; with removed set, each has
// the generation label last.
func newNodeDescs(removed bool) nodeDescs {
	labels := func(extra ...string) []string {
		l := append([]string{"node"}, extra...)
		if removed {
			l = append(l, "generation")
		}
		return l
	}
	return nodeDescs{
		requests:  prometheus.NewDesc("tether_node_requests_total", "Answers relayed from each node (WebSocket sessions count once, as 1xx), by status class.", labels("code"), nil),
		bytes:     prometheus.NewDesc("tether_node_bytes_total", "Body and WebSocket bytes to (in) and from (out) each node.", labels("dir"), nil),
		sessions:  prometheus.NewDesc("tether_node_websocket_sessions", "WebSocket sessions spliced to each node now.", labels(), nil),
		inFlight:  prometheus.NewDesc("tether_node_requests_in_flight", "HTTP requests waiting for or receiving an answer from each node now.", labels(), nil),
		state:     prometheus.NewDesc("tether_node_state", "1 for the state each node is in (up, down, draining), 0 for the others.", labels("state"), nil),
		connect:   prometheus.NewDesc("tether_node_connect_seconds", "Time to open a connection to each node.", labels(), nil),
		head:      prometheus.NewDesc("tether_node_response_head_seconds", "Time from a request sent to its answer head read.", labels(), nil),
		failovers: prometheus.NewDesc("tether_node_failovers_total", "Requests sticky to each node that went to another node.", labels(), nil),
		evictions: prometheus.NewDesc("tether_node_evictions_total", "WebSocket sessions ended because their node failed: its stream ended without a Close, or it was marked down (each session counted once, by whichever noticed first).", labels(), nil),
		hits:      prometheus.NewDesc("tether_pool_hits_total", "Requests sent on a pooled keep-alive connection.", labels(), nil),
		misses:    prometheus.NewDesc("tether_pool_misses_total", "Requests that needed a new connection.", labels(), nil),
	}
}

func newCollector(srv Server) *collector {
	return &collector{
		srv:         srv,
		live:        newNodeDescs(false),
		removed:     newNodeDescs(true),
		clientConns: prometheus.NewDesc("tether_client_connections", "Open client connections.", nil, nil),
		refused:     prometheus.NewDesc("tether_refused_total", "Requests tether answered itself with an error, by status.", []string{"reason"}, nil),
		handshakes: prometheus.NewDesc("tether_tls_handshakes_total", "TLS handshakes by result: done (resumed included), resumed, failed, busy (no slot in time), plain_http.",
			[]string{"result"}, nil),
		handshakesNow: prometheus.NewDesc("tether_tls_handshakes", "TLS handshakes computing now (computing) or waiting for a slot (waiting).", []string{"phase"}, nil),
	}
}

// Describe sends nothing: the collector is unchecked (see collector).
func (c *collector) Describe(chan<- *prometheus.Desc) {}

var (
	classNames = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}
	stateNames = [...]pool.State{pool.StateUp, pool.StateDown, pool.StateDraining}
)

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c.srv.Nodes() {
		c.collectNode(ch, n)
	}
	s := c.srv.Counters()
	counter, gauge := prometheus.CounterValue, prometheus.GaugeValue
	ch <- prometheus.MustNewConstMetric(c.clientConns, gauge, float64(s.ClientConns))
	ch <- prometheus.MustNewConstMetric(refusedConnsDesc, counter, float64(s.MaxConnsRefused), "max_conns")
	ch <- prometheus.MustNewConstMetric(refusedConnsDesc, counter, float64(s.ProxyRefused), "proxy_protocol")
	dl := s.DNS
	ch <- prometheus.MustNewConstMetric(dnsLookupsDesc, counter, float64(dl.OK), "ok")
	ch <- prometheus.MustNewConstMetric(dnsLookupsDesc, counter, float64(dl.Error), "error")
	ch <- prometheus.MustNewConstMetric(dnsLookupsDesc, counter, float64(dl.Empty), "empty")
	ch <- prometheus.MustNewConstMetric(dnsSkippedDesc, counter, float64(dl.Refused), "refused_address")
	ch <- prometheus.MustNewConstMetric(dnsSkippedDesc, counter, float64(dl.TargetErrors), "target_error")
	for i, status := range RefusedStatuses {
		ch <- prometheus.MustNewConstMetric(c.refused, counter, float64(s.Refused[i]), strconv.Itoa(status))
	}
	for _, p := range c.srv.Predecessors() {
		pid := strconv.Itoa(p.PID)
		ch <- prometheus.MustNewConstMetric(predConnsDesc, gauge, float64(p.Conns), pid)
		ch <- prometheus.MustNewConstMetric(predSessionsDesc, gauge, float64(p.Sessions), pid)
		ch <- prometheus.MustNewConstMetric(predTLSSessionsDesc, gauge, float64(p.TLSSessions), pid)
		ch <- prometheus.MustNewConstMetric(predInFlightDesc, gauge, float64(p.InFlight), pid)
	}
	if hs := s.TLS; hs != nil {
		for result, v := range map[string]uint64{"done": hs.Done, "resumed": hs.Resumed, "failed": hs.Failed, "busy": hs.Busy, "plain_http": hs.PlainHTTP} {
			ch <- prometheus.MustNewConstMetric(c.handshakes, counter, float64(v), result)
		}
		ch <- prometheus.MustNewConstMetric(c.handshakesNow, gauge, float64(hs.InFlight), "computing")
		ch <- prometheus.MustNewConstMetric(c.handshakesNow, gauge, float64(hs.Waiting), "waiting")
	}
}

// collectNode sends one node's metrics: labelled {node} for a live node,
// {node, generation} for a copy a reload removed.
func (c *collector) collectNode(ch chan<- prometheus.Metric, n *pool.Node) {
	d, gen := &c.live, ""
	if n.Removed() {
		d, gen = &c.removed, strconv.FormatUint(n.Generation(), 10)
	}
	// values returns the label values in the descriptions' order.
	values := func(extra ...string) []string {
		v := append([]string{n.Name}, extra...)
		if gen != "" {
			v = append(v, gen)
		}
		return v
	}
	counter, gauge := prometheus.CounterValue, prometheus.GaugeValue
	st := &n.Stats
	for i, name := range classNames {
		ch <- prometheus.MustNewConstMetric(d.requests, counter, float64(st.ByClass[i].Load()), values(name)...)
	}
	ch <- prometheus.MustNewConstMetric(d.bytes, counter, float64(st.BytesIn.Load()), values("in")...)
	ch <- prometheus.MustNewConstMetric(d.bytes, counter, float64(st.BytesOut.Load()), values("out")...)
	ch <- prometheus.MustNewConstMetric(d.sessions, gauge, float64(n.Sessions()), values()...)
	ch <- prometheus.MustNewConstMetric(d.inFlight, gauge, float64(n.InFlight()), values()...)
	now := n.State()
	for _, state := range stateNames {
		v := 0.0
		if state == now {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(d.state, gauge, v, values(state.String())...)
	}
	for desc, h := range map[*prometheus.Desc]*pool.Histogram{d.connect: &st.Connect, d.head: &st.Head} {
		count, sum, buckets := h.Snapshot()
		ch <- prometheus.MustNewConstHistogram(desc, count, sum, buckets, values()...)
	}
	ch <- prometheus.MustNewConstMetric(d.failovers, counter, float64(st.Failovers.Load()), values()...)
	ch <- prometheus.MustNewConstMetric(d.evictions, counter, float64(st.Evictions.Load()), values()...)
	ch <- prometheus.MustNewConstMetric(d.hits, counter, float64(n.Reuses.Load()), values()...)
	ch <- prometheus.MustNewConstMetric(d.misses, counter, float64(n.Dials.Load()), values()...)
}

// metricsHandler serves /metrics: tether's collector plus the Go runtime's
// and the process's standard metrics.
func metricsHandler(srv Server) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(srv), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: nil})
}
