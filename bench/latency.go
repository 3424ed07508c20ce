package bench

import (
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1 µs to latencyMax with three
// significant digits: a p99.9 of 1.234 ms reads as 1.234 ms, not 1 ms.
const (
	latencyMin    = 1
	latencyMax    = int64(time.Minute / time.Microsecond)
	latencyDigits = 3
	// timelineDigits is the precision of the per-interval histograms of a
	// timeline (about 20 KiB each): enough for a plot.
	timelineDigits = 2
	// maxTimelinePoints bounds the intervals of a timeline: a run longer
	// than that many seconds gets wider intervals.
	maxTimelinePoints = 600
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

// TimelinePoint is the latency of the operations that ended in one
// interval of a run (two significant digits).
type TimelinePoint struct {
	At       time.Duration // the interval's start, since the run's start
	Count    int64
	P50, P99 time.Duration
	Max      time.Duration
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

func usDuration(v int64) time.Duration { return time.Duration(v) * time.Microsecond }

// summarize digests h. An empty histogram gives the zero summary.
func summarize(h *hdrhistogram.Histogram) LatencySummary {
	n := h.TotalCount()
	if n == 0 {
		return LatencySummary{}
	}
	q := h.ValueAtPercentiles([]float64{50, 90, 99, 99.9})
	return LatencySummary{
		Count: n,
		Min:   usDuration(h.Min()),
		Mean:  time.Duration(h.Mean() * float64(time.Microsecond)),
		P50:   usDuration(q[50]),
		P90:   usDuration(q[90]),
		P99:   usDuration(q[99]),
		P999:  usDuration(q[99.9]),
		Max:   usDuration(h.Max()),
	}
}

// timelineInterval is the width of the timeline intervals of a run of
// duration d: a second, or whole seconds wide enough that the run has at
// most maxTimelinePoints intervals.
func timelineInterval(d time.Duration) time.Duration {
	span := maxTimelinePoints * time.Second
	return max(time.Second, (d+span-1)/span*time.Second)
}

// latencies is a histogram shared by many workers, with a timeline of
// coarser histograms, one per interval. It is split in shards, one lock
// each, so that workers on different CPUs rarely contend; worker i records
// into shard i mod shards. Lock order: a shard's mu before latencies.mu.
type latencies struct {
	shards   []latencyShard
	interval time.Duration
	count    atomic.Int64 // operations recorded, for progress lines

	mu       sync.Mutex
	timeline map[int]*hdrhistogram.Histogram // guarded by mu; by interval index
}

type latencyShard struct {
	mu     sync.Mutex
	h      *hdrhistogram.Histogram // guarded by mu
	cur    *hdrhistogram.Histogram // guarded by mu; interval curIdx, not yet in the timeline
	curIdx int                     // guarded by mu
	_      [32]byte                // keeps neighbouring locks off one cache line
}

// newLatencies returns empty latencies whose timeline has intervals of
// interval (see timelineInterval).
func newLatencies(interval time.Duration) *latencies {
	l := &latencies{
		shards:   make([]latencyShard, runtime.GOMAXPROCS(0)),
		interval: interval,
		timeline: make(map[int]*hdrhistogram.Histogram),
	}
	for i := range l.shards {
		l.shards[i].h = newLatencyHistogram()
		l.shards[i].cur = hdrhistogram.New(latencyMin, latencyMax, timelineDigits)
	}
	return l
}

// record adds d from worker, for an operation that ended at (since the
// run's start).
func (l *latencies) record(worker int, at, d time.Duration) {
	idx := int(max(at, 0) / l.interval)
	s := &l.shards[worker%len(l.shards)]
	s.mu.Lock()
	recordLatency(s.h, d)
	if idx != s.curIdx {
		l.flushLocked(s)
		s.curIdx = idx
	}
	recordLatency(s.cur, d)
	s.mu.Unlock()
	l.count.Add(1)
}

// flushLocked moves the shard's current interval into the timeline.
func (l *latencies) flushLocked(s *latencyShard) {
	if s.cur.TotalCount() == 0 {
		return
	}
	l.mu.Lock()
	t := l.timeline[s.curIdx]
	if t == nil {
		t = hdrhistogram.New(latencyMin, latencyMax, timelineDigits)
		l.timeline[s.curIdx] = t
	}
	t.Merge(s.cur)
	l.mu.Unlock()
	s.cur.Reset()
}

// merged merges the shards into one histogram and returns it with the
// timeline in time order. Call it once the workers are done.
func (l *latencies) merged() (*hdrhistogram.Histogram, []TimelinePoint) {
	all := newLatencyHistogram()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		all.Merge(s.h)
		l.flushLocked(s)
		s.mu.Unlock()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	points := make([]TimelinePoint, 0, len(l.timeline))
	for _, idx := range slices.Sorted(maps.Keys(l.timeline)) {
		h := l.timeline[idx]
		q := h.ValueAtPercentiles([]float64{50, 99})
		points = append(points, TimelinePoint{
			At: time.Duration(idx) * l.interval, Count: h.TotalCount(),
			P50: usDuration(q[50]), P99: usDuration(q[99]), Max: usDuration(h.Max()),
		})
	}
	return all, points
}

// summary merges the shards and digests them.
func (l *latencies) summary() LatencySummary {
	h, _ := l.merged()
	return summarize(h)
}
