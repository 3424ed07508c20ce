package bench

import (
	"errors"
	"os"
	"strconv"
)

// syscallEvent is the tracepoint counted: every system call entered, what
// `perf stat -e raw_syscalls:sys_enter` counts.
const syscallEvent = "raw_syscalls:sys_enter"

// errNoSyscallCounting is returned where the kernel's perf events are not
// available to this harness.
var errNoSyscallCounting = errors.New("bench: system calls are counted on Linux only")

// syscallCounter counts the system calls a set of processes enter: one
// perf event (perf_event_open(2) on syscallEvent) per thread, opened off,
// inherited by the threads and processes each creates afterwards, switched
// on and off around the load. Not safe for concurrent use.
type syscallCounter struct {
	fds []int // one event per thread, closed by stop
}

// threadsOf lists the threads of pids, from /proc/PID/task.
func threadsOf(pids []int) map[int]bool {
	out := map[int]bool{}
	for _, pid := range pids {
		tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		if err != nil {
			continue
		}
		for _, t := range tasks {
			if tid, err := strconv.Atoi(t.Name()); err == nil {
				out[tid] = true
			}
		}
	}
	return out
}
