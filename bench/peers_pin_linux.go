//go:build linux

package bench

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// pinSupport returns nil: Linux pins threads with sched_setaffinity and
// processes with taskset.
func pinSupport() error { return nil }

// allowedCPUs lists the CPUs this process may run on, from the
// Cpus_allowed_list of /proc/self/status.
func allowedCPUs() ([]int, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("read affinity: %w", err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return parseCPUList(strings.TrimSpace(v))
		}
	}
	return nil, errors.New("read affinity: no Cpus_allowed_list in /proc/self/status")
}

// pinSelf moves every thread of this process to cpu and sets GOMAXPROCS
// to 1. Threads the runtime creates later inherit the affinity of the
// thread that creates them; a few passes catch threads created meanwhile.
func pinSelf(cpu int) error {
	var mask [16]uint64 // 1024 CPUs
	if cpu < 0 || cpu >= len(mask)*64 {
		return fmt.Errorf("pin to CPU %d: out of range", cpu)
	}
	mask[cpu/64] = 1 << (cpu % 64)
	done := map[int]bool{}
	for range 5 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("pin to CPU %d: %w", cpu, err)
		}
		fresh := false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid),
				unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask[0])))
			if errno != 0 && errno != syscall.ESRCH {
				return fmt.Errorf("pin thread %d to CPU %d: %w", tid, cpu, errno)
			}
			done[tid], fresh = true, true
		}
		if !fresh {
			break
		}
	}
	runtime.GOMAXPROCS(1)
	return nil
}
