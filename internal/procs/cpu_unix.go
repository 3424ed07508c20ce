//go:build unix

package procs

import (
	"syscall"
	"time"
)

// newCPUClock reads the process's CPU time from getrusage(2).
func newCPUClock() (cpuClock, error) {
	read := func() (time.Duration, error) {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, err
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
	}
	if _, err := read(); err != nil {
		return nil, err
	}
	return read, nil
}
