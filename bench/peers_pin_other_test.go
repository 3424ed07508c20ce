//go:build !linux

package bench

import (
	"errors"
	"runtime"
	"testing"
)

func TestPinUnsupported(t *testing.T) {
	t.Parallel()
	cpus, err := allowedCPUs()
	if err != nil || len(cpus) != runtime.NumCPU() {
		t.Fatalf("allowedCPUs() = %v, %v; want %d CPUs", cpus, err, runtime.NumCPU())
	}
	if p, err := planPins(PinNone, cpus); err != nil || p.workers != len(cpus) {
		t.Errorf("none: %+v, %v", p, err)
	}
	if _, err := planPins(PinSplit, []int{0, 1}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("split: %v, want errors.ErrUnsupported", err)
	}
	if err := pinSelf(0); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("pinSelf: %v, want errors.ErrUnsupported", err)
	}
}
