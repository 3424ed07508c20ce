package heap

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/rs/zerolog"
)

// Memory release after bursts (--release-memory). A storm of new sessions
// (clients reconnecting after a failover or a restart) allocates a few KiB
// of short-lived state per connection; Go's collector lets the heap grow to
// twice what is live before it collects, and an idle proxy allocates
// nothing, so no collection comes to free that garbage until the runtime's
// two-minute forced one, and the scavenger returns pages only slowly. The
// releaser watches the allocation rate: a burst is a run of busy ticks (at
// least releaseQuiet bytes each); when one that allocated releaseBurst bytes
// or more is followed by a quiet tick, it collects and returns the free
// pages to the OS at once, so tens of thousands of idle sessions hold about
// what they use. The cost is one collection per burst, at a quiet moment;
// steady light traffic (every tick quiet) never triggers it.
const releaseTick = 500 * time.Millisecond

// releaseBurst and releaseQuiet are in bytes; tests lower them.
var releaseBurst, releaseQuiet uint64 = 16 << 20, 256 << 10

// ReleaseAfterBursts runs the releaser until ctx ends (tether runs it with
// --release-memory, the default).
func ReleaseAfterBursts(ctx context.Context, log zerolog.Logger) {
	t := time.NewTicker(releaseTick)
	defer t.Stop()
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	runReleaser(ctx, t.C, read, debug.FreeOSMemory, log)
}

// runReleaser is ReleaseAfterBursts with its clock (ticks), its reading of
// the bytes allocated so far (read) and its release injected, for tests.
func runReleaser(ctx context.Context, ticks <-chan time.Time, read func() uint64, release func(), log zerolog.Logger) {
	r := releaser{burstMin: releaseBurst, quiet: releaseQuiet, last: read()}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		burst, ok := r.tick(read())
		if !ok {
			continue
		}
		start := time.Now()
		release()
		log.Debug().Uint64("allocated", burst).Dur("took", time.Since(start)).Msg("memory released after a burst")
		r.last = read()
	}
}

// releaser decides, tick by tick, when a burst has ended.
type releaser struct {
	burstMin, quiet uint64 // releaseBurst and releaseQuiet when it started
	last            uint64 // bytes allocated at the last tick
	burst           uint64 // bytes allocated by the busy ticks in a row so far
}

// tick takes the bytes allocated so far, at a tick. It reports whether to
// release now (a quiet tick after a burst of at least burstMin bytes) and
// the burst's size.
func (r *releaser) tick(allocated uint64) (burst uint64, release bool) {
	step := allocated - r.last
	r.last = allocated
	if step >= r.quiet {
		r.burst += step
		return 0, false
	}
	burst, r.burst = r.burst, 0 // a short burst, or none, is forgotten
	return burst, burst >= r.burstMin
}
