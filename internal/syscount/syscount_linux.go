//go:build linux

package syscount

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// event is the tracepoint counted: every system call entered.
const event = "raw_syscalls:sys_enter"

// attachPasses bounds the passes over /proc/self/task that catch threads
// created while the counters were being opened.
const attachPasses = 5

// Counter counts the system calls entered by the threads of this process
// from Open on: one perf event per thread that existed then, each
// inherited by the threads its thread creates.
type Counter struct {
	fds []int
}

// tracepointID reads the id of event from tracefs.
func tracepointID() (uint64, error) {
	var last error
	for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		b, err := os.ReadFile(dir + "/events/raw_syscalls/sys_enter/id")
		if err != nil {
			last = err
			continue
		}
		return strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	}
	return 0, fmt.Errorf("tracepoint %s: %w (is tracefs mounted?)", event, last)
}

// openEvent opens a counter of event on thread tid, off and inherited.
func openEvent(id uint64, tid int) (int, error) {
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_TRACEPOINT,
		Config: id,
		Bits:   unix.PerfBitDisabled | unix.PerfBitInherit,
	}
	attr.Size = uint32(unsafe.Sizeof(attr))
	return unix.PerfEventOpen(&attr, tid, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
}

// Open starts counting on every thread of this process. Threads created
// while the counters are being opened are caught by further passes; those
// created later inherit their creator's counter.
func Open() (*Counter, error) {
	id, err := tracepointID()
	if err != nil {
		return nil, err
	}
	c := &Counter{}
	done := map[int]bool{}
	for range attachPasses {
		tids, err := threads()
		if err != nil {
			c.Close()
			return nil, err
		}
		fresh := false
		for _, tid := range tids {
			if done[tid] {
				continue
			}
			done[tid], fresh = true, true
			fd, err := openEvent(id, tid)
			if err == unix.ESRCH {
				continue // the thread has exited
			}
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("perf_event_open %s on thread %d: %w (root, or sysctl kernel.perf_event_paranoid)", event, tid, err)
			}
			c.fds = append(c.fds, fd)
		}
		if !fresh {
			break
		}
	}
	for _, fd := range c.fds {
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
			c.Close()
			return nil, fmt.Errorf("enable perf event: %w", err)
		}
	}
	return c, nil
}

// threads lists the ids of this process's threads.
func threads() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// Count is the system calls entered since Open: the threads' own and those
// of the threads (and processes) they created, exited or not. Reading
// enters one system call per counter, which are counted.
func (c *Counter) Count() (int64, error) {
	var total int64
	var buf [8]byte
	for _, fd := range c.fds {
		n, err := unix.Read(fd, buf[:])
		if err != nil || n != len(buf) {
			return 0, fmt.Errorf("read perf event: %d bytes, %v", n, err)
		}
		total += int64(binary.NativeEndian.Uint64(buf[:]))
	}
	return total, nil
}

// Close stops counting and closes the counters.
func (c *Counter) Close() {
	for _, fd := range c.fds {
		_ = unix.Close(fd)
	}
	c.fds = nil
}
