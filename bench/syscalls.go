package bench

import "github.com/tether-lb/tether/internal/syscount"

// syscallEvent is the tracepoint counted: every system call entered, what
// `perf stat -e raw_syscalls:sys_enter` counts.
const syscallEvent = "raw_syscalls:sys_enter"

// syscallCounter counts the system calls a set of processes enter: one
// perf event per thread (internal/syscount), opened off, inherited by the
// threads and processes each creates afterwards, switched on and off
// around the load. Not safe for concurrent use.
type syscallCounter struct {
	c *syscount.Counter
}

// checkSyscallCounting reports whether system calls can be counted here.
func checkSyscallCounting() error { return syscount.Check() }

// startSyscallCounter opens a counter on every thread of pids, off.
func startSyscallCounter(pids []int) (*syscallCounter, error) {
	c, err := syscount.OpenProcs(pids)
	if err != nil {
		return nil, err
	}
	return &syscallCounter{c: c}, nil
}

// enable starts counting.
func (c *syscallCounter) enable() error { return c.c.Enable() }

// stop stops counting, closes the counters and returns the sum: the
// threads' own calls and those of the threads and processes they created.
func (c *syscallCounter) stop() (int64, error) { return c.c.Stop() }
