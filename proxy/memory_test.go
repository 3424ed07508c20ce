package proxy

import (
	"context"
	"io"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// forcedGCs reads how many collections were forced (runtime.GC,
// debug.FreeOSMemory) so far.
func forcedGCs() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

var sink [][]byte

// TestReleaseAfterBurst: a burst of allocation followed by quiet makes the
// releaser collect once; quiet alone does not.
func TestReleaseAfterBurst(t *testing.T) {
	ctx := t.Context()
	go ReleaseAfterBursts(ctx, zerolog.New(io.Discard))
	before := forcedGCs()
	time.Sleep(3 * releaseTick)
	if n := forcedGCs() - before; n != 0 {
		t.Fatalf("%d collections forced without a burst", n)
	}
	for range 2 * releaseBurst / (4 << 10) {
		sink = append(sink[:0], make([]byte, 4<<10)) // garbage, as a storm of connections leaves
	}
	sink = nil
	deadline := time.Now().Add(5 * time.Second)
	for forcedGCs() == before {
		if time.Now().After(deadline) {
			t.Fatal("no collection forced within 5 s of a burst followed by quiet")
		}
		time.Sleep(50 * time.Millisecond)
	}
	after := forcedGCs()
	time.Sleep(3 * releaseTick)
	if n := forcedGCs() - after; n != 0 {
		t.Errorf("%d more collections forced while quiet after the release", n)
	}
}

// TestNoReleaseUnderSteadyLightLoad: allocation that never makes a busy
// tick adds up to no burst, however long it goes on.
func TestNoReleaseUnderSteadyLightLoad(t *testing.T) {
	burst, quiet := releaseBurst, releaseQuiet
	releaseBurst, releaseQuiet = 512<<10, 256<<10
	defer func() { releaseBurst, releaseQuiet = burst, quiet }()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ReleaseAfterBursts(ctx, zerolog.New(io.Discard))
	}()
	defer func() { cancel(); <-done }()
	before := forcedGCs()
	// 16 KiB every 50 ms: 160 KiB a tick, under the quiet mark; 1.9 MiB
	// in all, past the burst mark.
	for range 120 {
		sink = append(sink[:0], make([]byte, 16<<10))
		time.Sleep(50 * time.Millisecond)
	}
	sink = nil
	if n := forcedGCs() - before; n != 0 {
		t.Errorf("%d collections forced under steady light allocation", n)
	}
}
