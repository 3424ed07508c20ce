package pool

import (
	"sync/atomic"
	"time"
)

// LatencyBounds are the upper bounds, in seconds, of the latency
// histograms' buckets: from half a millisecond to the longest long poll.
var LatencyBounds = [...]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

// Histogram counts durations into LatencyBounds buckets with atomics: an
// observation takes no lock and allocates nothing.
type Histogram struct {
	counts [len(LatencyBounds) + 1]atomic.Uint64 // the last is +Inf
	sum    atomic.Int64                          // nanoseconds
}

// Observe counts one duration.
func (h *Histogram) Observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(LatencyBounds) && s > LatencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Snapshot returns the count, the sum in seconds and the cumulative count
// per upper bound, as Prometheus exposes a histogram.
func (h *Histogram) Snapshot() (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(LatencyBounds))
	for i, ub := range LatencyBounds {
		count += h.counts[i].Load()
		buckets[ub] = count
	}
	count += h.counts[len(LatencyBounds)].Load()
	return count, time.Duration(h.sum.Load()).Seconds(), buckets
}

// Stats are a node's traffic counters for metrics, counted with atomics on
// the request path.
type Stats struct {
	// ByClass counts answers by status class: index 1 for 1xx … 5, index 0
	// for anything else.
	ByClass [6]atomic.Uint64
	// BytesIn counts request and client-to-node WebSocket bytes; BytesOut
	// answer and node-to-client bytes.
	BytesIn, BytesOut atomic.Uint64
	// Connect times dials (TCP and TLS); Head times the wait from a request
	// sent to its answer head read.
	Connect, Head Histogram
	// Failovers counts requests that stickiness sent to this node but that
	// went to another because it was down or refused them.
	Failovers atomic.Uint64
	// Evictions counts WebSocket sessions ended because the node failed:
	// evicted when it was marked down, or ended by the node's stream
	// ending without a Close. Each session counts once (CountEviction),
	// whichever came first.
	Evictions atomic.Uint64
}

// CountStatus adds one answer with status code to its class.
func (s *Stats) CountStatus(code int) {
	c := code / 100
	if c < 1 || c > 5 {
		c = 0
	}
	s.ByClass[c].Add(1)
}
