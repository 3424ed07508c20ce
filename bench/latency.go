package bench

import (
	"runtime"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1 µs to latencyMax with three
// significant digits: a p99.9 of 1.234 ms reads as 1.234 ms, not 1 ms.
const (
	latencyMin    = 1
	latencyMax    = int64(time.Minute / time.Microsecond)
	latencyDigits = 3
)

// LatencySummary is the digest of a latency histogram that reports print.
// Durations are exact to three significant digits.
type LatencySummary struct {
	Count int64
	Min   time.Duration
	Mean  time.Duration
	P50   time.Duration
	P90   time.Duration
	P99   time.Duration
	P999  time.Duration
	Max   time.Duration
}

// newLatencyHistogram returns an empty histogram of microseconds.
func newLatencyHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(latencyMin, latencyMax, latencyDigits)
}

// recordLatency adds d to h, clamped to the histogram's range.
func recordLatency(h *hdrhistogram.Histogram, d time.Duration) {
	us := int64(d / time.Microsecond)
	us = min(max(us, latencyMin), latencyMax)
	_ = h.RecordValue(us) // cannot fail: us is within range
}

// summarize digests h. An empty histogram gives the zero summary.
func summarize(h *hdrhistogram.Histogram) LatencySummary {
	n := h.TotalCount()
	if n == 0 {
		return LatencySummary{}
	}
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	q := h.ValueAtPercentiles([]float64{50, 90, 99, 99.9})
	return LatencySummary{
		Count: n,
		Min:   us(h.Min()),
		Mean:  time.Duration(h.Mean() * float64(time.Microsecond)),
		P50:   us(q[50]),
		P90:   us(q[90]),
		P99:   us(q[99]),
		P999:  us(q[99.9]),
		Max:   us(h.Max()),
	}
}

// latencies is a histogram shared by many workers. It is split in shards,
// one lock each, so that workers on different CPUs rarely contend; worker i
// records into shard i mod shards.
type latencies struct {
	shards []latencyShard
}

type latencyShard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram // guarded by mu
	_  [40]byte                // keeps neighbouring locks off one cache line
}

func newLatencies() *latencies {
	l := &latencies{shards: make([]latencyShard, runtime.GOMAXPROCS(0))}
	for i := range l.shards {
		l.shards[i].h = newLatencyHistogram()
	}
	return l
}

// record adds d from worker.
func (l *latencies) record(worker int, d time.Duration) {
	s := &l.shards[worker%len(l.shards)]
	s.mu.Lock()
	recordLatency(s.h, d)
	s.mu.Unlock()
}

// summary merges the shards and digests them.
func (l *latencies) summary() LatencySummary {
	all := newLatencyHistogram()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		all.Merge(s.h)
		s.mu.Unlock()
	}
	return summarize(all)
}
