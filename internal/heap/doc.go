// Package heap gives the Go heap back to the OS after a burst of
// allocations (--release-memory): ReleaseAfterBursts watches the allocation
// rate and, when a burst is followed by a quiet moment, collects and
// returns the free pages at once.
//
// It knows only the runtime's allocation counter and a clock: nothing of
// connections, requests or nodes. cmd/tether runs it for the process.
//
//	go heap.ReleaseAfterBursts(ctx, log) // until ctx ends
package heap
