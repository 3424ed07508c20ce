//go:build !unix

package procs

import (
	"errors"
	"time"
)

// newCPUClock has no process CPU time to read here.
func newCPUClock() (cpuClock, error) {
	return func() (time.Duration, error) { return 0, errors.ErrUnsupported }, errors.ErrUnsupported
}
