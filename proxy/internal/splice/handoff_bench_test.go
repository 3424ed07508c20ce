//go:build linux

package splice

import (
	"testing"

	"github.com/tether-lb/tether/internal/syscount"
	"github.com/tether-lb/tether/proxy/internal/sockio/sockiotest"
)

// BenchmarkLoopHandoff moves idle sessions between two Loops as a hand-over
// does (Freeze, a copy of each descriptor, Adopt, Release, Thaw), beside
// Freeze and Thaw in place (an aborted hand-over). ns/session is the time of
// one step over all sessions divided by their number, syscalls/session the
// system calls of the whole process (its loops among them) likewise; the
// descriptors' journey between processes (SCM_RIGHTS) is not in them.
func BenchmarkLoopHandoff(b *testing.B) {
	const sessions = 1000
	for _, move := range []bool{true, false} {
		name := "move"
		if !move {
			name = "in-place"
		}
		b.Run(name, func(b *testing.B) {
			from, to := newTestLoops(b), newTestLoops(b)
			defer from.Close()
			defer to.Close()
			rigs := openIdleRigs(b, sockiotest.NewPairs(b), from, sessions)
			b.ReportAllocs()
			sc, scErr := syscount.Open()
			var calls int64
			if scErr == nil {
				defer sc.Close()
				calls, scErr = sc.Count()
			}
			b.ResetTimer()
			for b.Loop() {
				if move {
					moveAll(b, from, to, sessions)
					from, to = to, from
				} else {
					fs := from.Freeze()
					if len(fs) != sessions {
						b.Fatalf("Freeze took %d sessions, want %d", len(fs), sessions)
					}
					from.Thaw(fs)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*sessions), "ns/session")
			if scErr == nil {
				var end int64
				if end, scErr = sc.Count(); scErr == nil {
					b.ReportMetric(float64(end-calls)/float64(b.N*sessions), "syscalls/session")
				}
			}
			if scErr != nil {
				b.Logf("syscalls/session not reported: %v", scErr)
			}
			for _, r := range rigs {
				r.pingPong(b) // every session still carries bytes both ways
			}
			closeRigs(b, rigs)
		})
	}
}
