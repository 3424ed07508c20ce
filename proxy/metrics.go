package proxy

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tether-lb/tether/pool"
)

// Metrics are kept as plain atomics where the traffic is (pool.Node's
// counters, Server.refused) and turned into Prometheus metrics only when
// /metrics is scraped: counting takes no lock and allocates nothing on the
// request path. prometheus/client_golang does the exposition format.

// refusedStatuses are the statuses tether answers itself, counted by reason.
var refusedStatuses = [...]int{400, 408, 413, 431, 502, 503, 504}

// refusedIndex maps a status tether answered itself to its counter.
func refusedIndex(status int) int {
	for i, s := range refusedStatuses {
		if s == status {
			return i
		}
	}
	return len(refusedStatuses) - 1
}

// refusedConnsDesc counts connections tether closed at accept, by reason.
var refusedConnsDesc = prometheus.NewDesc("tether_refused_connections_total",
	"Client connections closed at accept without a request read, by reason (max_conns: --max-conns reached).", []string{"reason"}, nil)

// collector exposes a Server's counters to Prometheus.
type collector struct {
	s *Server

	requests, bytes, sessions, inFlight, state        *prometheus.Desc
	connect, head, failovers, evictions, hits, misses *prometheus.Desc
	clientConns, refused                              *prometheus.Desc
	handshakes, handshakesNow                         *prometheus.Desc
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(s *Server) *collector {
	node := []string{"node"}
	return &collector{
		s:           s,
		requests:    prometheus.NewDesc("tether_node_requests_total", "Answers relayed from each node (WebSocket sessions count once, as 1xx), by status class.", []string{"node", "code"}, nil),
		bytes:       prometheus.NewDesc("tether_node_bytes_total", "Body and WebSocket bytes to (in) and from (out) each node.", []string{"node", "dir"}, nil),
		sessions:    prometheus.NewDesc("tether_node_websocket_sessions", "WebSocket sessions spliced to each node now.", node, nil),
		inFlight:    prometheus.NewDesc("tether_node_requests_in_flight", "HTTP requests waiting for or receiving an answer from each node now.", node, nil),
		state:       prometheus.NewDesc("tether_node_state", "1 for the state each node is in (up, down, draining), 0 for the others.", []string{"node", "state"}, nil),
		connect:     prometheus.NewDesc("tether_node_connect_seconds", "Time to open a connection to each node.", node, nil),
		head:        prometheus.NewDesc("tether_node_response_head_seconds", "Time from a request sent to its answer head read.", node, nil),
		failovers:   prometheus.NewDesc("tether_node_failovers_total", "Requests sticky to each node that went to another node.", node, nil),
		evictions:   prometheus.NewDesc("tether_node_evictions_total", "WebSocket sessions ended because their node went down.", node, nil),
		hits:        prometheus.NewDesc("tether_pool_hits_total", "Requests sent on a pooled keep-alive connection.", node, nil),
		misses:      prometheus.NewDesc("tether_pool_misses_total", "Requests that needed a new connection.", node, nil),
		clientConns: prometheus.NewDesc("tether_client_connections", "Open client connections.", nil, nil),
		refused:     prometheus.NewDesc("tether_refused_total", "Requests tether answered itself with an error, by status.", []string{"reason"}, nil),
		handshakes: prometheus.NewDesc("tether_tls_handshakes_total", "TLS handshakes by result: done (resumed included), resumed, failed, busy (no slot in time), plain_http.",
			[]string{"result"}, nil),
		handshakesNow: prometheus.NewDesc("tether_tls_handshakes", "TLS handshakes computing now (computing) or waiting for a slot (waiting).", []string{"phase"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

var (
	classNames = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}
	stateNames = [...]pool.State{pool.StateUp, pool.StateDown, pool.StateDraining}
)

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter, gauge := prometheus.CounterValue, prometheus.GaugeValue
	for _, n := range c.s.pool.Table().Nodes() {
		st := &n.Stats
		for i, name := range classNames {
			ch <- prometheus.MustNewConstMetric(c.requests, counter, float64(st.ByClass[i].Load()), n.Name, name)
		}
		ch <- prometheus.MustNewConstMetric(c.bytes, counter, float64(st.BytesIn.Load()), n.Name, "in")
		ch <- prometheus.MustNewConstMetric(c.bytes, counter, float64(st.BytesOut.Load()), n.Name, "out")
		ch <- prometheus.MustNewConstMetric(c.sessions, gauge, float64(n.Sessions.Load()), n.Name)
		ch <- prometheus.MustNewConstMetric(c.inFlight, gauge, float64(n.InFlight.Load()), n.Name)
		now := n.State()
		for _, state := range stateNames {
			v := 0.0
			if state == now {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.state, gauge, v, n.Name, state.String())
		}
		for desc, h := range map[*prometheus.Desc]*pool.Histogram{c.connect: &st.Connect, c.head: &st.Head} {
			count, sum, buckets := h.Snapshot()
			ch <- prometheus.MustNewConstHistogram(desc, count, sum, buckets, n.Name)
		}
		ch <- prometheus.MustNewConstMetric(c.failovers, counter, float64(st.Failovers.Load()), n.Name)
		ch <- prometheus.MustNewConstMetric(c.evictions, counter, float64(st.Evictions.Load()), n.Name)
		ch <- prometheus.MustNewConstMetric(c.hits, counter, float64(n.Reuses.Load()), n.Name)
		ch <- prometheus.MustNewConstMetric(c.misses, counter, float64(n.Dials.Load()), n.Name)
	}
	ch <- prometheus.MustNewConstMetric(c.clientConns, gauge, float64(c.s.conns.Load()))
	ch <- prometheus.MustNewConstMetric(refusedConnsDesc, counter, float64(c.s.maxConnsRefused.Load()), "max_conns")
	for i, status := range refusedStatuses {
		ch <- prometheus.MustNewConstMetric(c.refused, counter, float64(c.s.refused[i].Load()), strconv.Itoa(status))
	}
	if c.s.hs != nil {
		hs := c.s.hs.Stats()
		for result, v := range map[string]uint64{"done": hs.Done, "resumed": hs.Resumed, "failed": hs.Failed, "busy": hs.Busy, "plain_http": hs.PlainHTTP} {
			ch <- prometheus.MustNewConstMetric(c.handshakes, counter, float64(v), result)
		}
		ch <- prometheus.MustNewConstMetric(c.handshakesNow, gauge, float64(hs.InFlight), "computing")
		ch <- prometheus.MustNewConstMetric(c.handshakesNow, gauge, float64(hs.Waiting), "waiting")
	}
}

// metricsHandler serves /metrics: tether's collector plus the Go runtime's
// and the process's standard metrics.
func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(s), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: nil})
}
