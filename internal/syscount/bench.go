package syscount

import (
	"sync"
	"testing"
)

// Bench is a benchmark's counter: Start opens it before the loop, Report
// gives syscalls/op after it.
type Bench struct {
	c     *Counter
	start int64
}

var unavailable sync.Once

// Start counts b's system calls from here on. Where they cannot be counted
// (not Linux, no tracefs, perf events not allowed) it returns nil, on
// which Report does nothing, and logs why once per test binary.
func Start(b *testing.B) *Bench {
	b.Helper()
	c, err := Open()
	if err == nil {
		var start int64
		if start, err = c.Count(); err == nil {
			sc := &Bench{c: c, start: start}
			b.Cleanup(c.Close)
			return sc
		}
		c.Close()
	}
	unavailable.Do(func() { b.Logf("syscalls/op not reported: %v", err) })
	return nil
}

// Report reports syscalls/op: the system calls every thread of the process
// entered since Start ÷ b.N, so those of a client and a node running in
// the benchmark's process too. Call it after the loop.
func (sc *Bench) Report(b *testing.B) {
	if sc == nil || b.N == 0 {
		return
	}
	end, err := sc.c.Count()
	sc.c.Close()
	if err != nil {
		b.Logf("syscalls/op not reported: %v", err)
		return
	}
	b.ReportMetric(float64(end-sc.start)/float64(b.N), "syscalls/op")
}
