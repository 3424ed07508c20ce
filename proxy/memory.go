package proxy

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
	burstMin, quiet := releaseBurst, releaseQuiet
	t := time.NewTicker(releaseTick)
	defer t.Stop()
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	last := read()
	var burst uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := read()
		step := now - last
		last = now
		if step >= quiet {
			burst += step
			continue
		}
		if burst < burstMin {
			burst = 0 // a short burst, or none: forget it
			continue
		}
		start := time.Now()
		debug.FreeOSMemory()
		log.Debug().Uint64("allocated", burst).Dur("took", time.Since(start)).Msg("memory released after a burst")
		burst = 0
		last = read()
	}
}
