package heap

import "testing"

// fakeHeap drives the releaser's decision tick by tick: the test allocates
// by adding to its counter and runs each tick itself, with no clock.
type fakeHeap struct {
	r         releaser
	allocated uint64
	released  int
}

func newFakeHeap() *fakeHeap {
	return &fakeHeap{r: releaser{burstMin: releaseBurst, quiet: releaseQuiet}}
}

// tick is one tick of runReleaser's loop.
func (h *fakeHeap) tick() {
	if _, ok := h.r.tick(h.allocated); ok {
		h.released++
		h.r.last = h.allocated
	}
}

// TestReleaseAfterBurst: a burst of allocation followed by quiet makes the
// releaser collect once; quiet alone does not.
func TestReleaseAfterBurst(t *testing.T) {
	h := newFakeHeap()
	for range 3 {
		h.tick()
	}
	if h.released != 0 {
		t.Fatalf("%d collections forced without a burst", h.released)
	}
	h.allocated += 2 * releaseBurst // garbage, as a storm of connections leaves
	h.tick()
	h.tick()
	if h.released != 1 {
		t.Fatalf("%d collections forced after a burst followed by quiet, want 1", h.released)
	}
	for range 3 {
		h.tick()
	}
	if h.released != 1 {
		t.Errorf("%d more collections forced while quiet after the release", h.released-1)
	}
}

// TestNoReleaseUnderSteadyLightLoad: allocation that never makes a busy
// tick adds up to no burst, however long it goes on.
func TestNoReleaseUnderSteadyLightLoad(t *testing.T) {
	burst, quiet := releaseBurst, releaseQuiet
	releaseBurst, releaseQuiet = 512<<10, 256<<10
	defer func() { releaseBurst, releaseQuiet = burst, quiet }()
	h := newFakeHeap()
	// 16 KiB ten times a tick: 160 KiB a tick, under the quiet mark; 1.9
	// MiB in all, past the burst mark.
	for i := range 120 {
		h.allocated += 16 << 10
		if i%10 == 9 {
			h.tick()
		}
	}
	if h.released != 0 {
		t.Errorf("%d collections forced under steady light allocation", h.released)
	}
}
