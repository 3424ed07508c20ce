//go:build !linux

package bench

import (
	"errors"
	"fmt"
	"runtime"
)

// pinSupport says why this system cannot pin: tether-bench pins with
// sched_setaffinity and taskset, which only Linux has. planPins refuses
// PinSplit with this error.
func pinSupport() error {
	return fmt.Errorf("CPU pinning on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// allowedCPUs lists CPUs 0 to runtime.NumCPU()-1: there is no
// Cpus_allowed_list to read here. Only the count is used (the workers of
// PinNone), as PinSplit is refused.
func allowedCPUs() ([]int, error) {
	cpus := make([]int, runtime.NumCPU())
	for i := range cpus {
		cpus[i] = i
	}
	return cpus, nil
}

// pinSelf fails with errors.ErrUnsupported: this system cannot pin (see
// pinSupport).
func pinSelf(cpu int) error {
	return fmt.Errorf("pin to CPU %d: %w", cpu, pinSupport())
}
