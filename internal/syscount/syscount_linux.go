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

// A thread created while the counters are being opened may inherit its
// creator's counter, or not (its creator had none yet): a counter of its
// own would count it twice in the first case, none would miss it in the
// second. So the opening is started over, up to attachTries times, until
// no thread appeared while it ran; the last try instead opens counters on
// the newcomers too, in up to attachPasses passes (a thread counted twice
// rather than one missed).
const (
	attachTries  = 5
	attachPasses = 5
)

// Counter counts the system calls entered by the threads of a set of
// processes: one perf event per thread that existed when it was opened,
// each inherited by the threads and processes its thread creates.
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

// Check reports whether system calls can be counted here: tracefs and the
// tracepoint present, perf events allowed (root, or
// kernel.perf_event_paranoid low enough).
func Check() error {
	id, err := tracepointID()
	if err != nil {
		return err
	}
	fd, err := openEvent(id, unix.Gettid())
	if err != nil {
		return fmt.Errorf("perf_event_open %s: %w (root, or sysctl kernel.perf_event_paranoid)", event, err)
	}
	return unix.Close(fd)
}

// Open starts counting on every thread of this process.
func Open() (*Counter, error) {
	c, err := OpenProcs([]int{os.Getpid()})
	if err != nil {
		return nil, err
	}
	if err := c.Enable(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// OpenProcs opens a counter, off, on every thread of pids; threads created
// later inherit their creator's counter. Enable starts it.
func OpenProcs(pids []int) (*Counter, error) {
	id, err := tracepointID()
	if err != nil {
		return nil, err
	}
	for try := 1; ; try++ {
		last := try == attachTries
		c, quiet, err := attach(id, pids, last)
		if err != nil {
			return nil, err
		}
		if quiet || last {
			if len(c.fds) == 0 {
				return nil, fmt.Errorf("count system calls: no thread of processes %v", pids)
			}
			return c, nil
		}
		c.Close()
	}
}

// attach opens a counter on every thread of pids, then lists them again:
// quiet reports that no thread appeared meanwhile. With catchUp, a thread
// that did gets a counter too, in further passes.
func attach(id uint64, pids []int, catchUp bool) (c *Counter, quiet bool, err error) {
	c = &Counter{}
	done := map[int]bool{}
	for pass := range attachPasses {
		fresh := false
		for tid := range threadsOf(pids) {
			if done[tid] {
				continue
			}
			done[tid], fresh = true, true
			if pass > 0 && !catchUp {
				return c, false, nil
			}
			fd, err := openEvent(id, tid)
			if err == unix.ESRCH {
				continue // the thread has exited
			}
			if err != nil {
				c.Close()
				return nil, false, fmt.Errorf("perf_event_open %s on thread %d: %w (root, or sysctl kernel.perf_event_paranoid)", event, tid, err)
			}
			c.fds = append(c.fds, fd)
		}
		if !fresh {
			return c, pass == 1, nil
		}
	}
	return c, false, nil
}

// Enable starts counting.
func (c *Counter) Enable() error {
	for _, fd := range c.fds {
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
			return fmt.Errorf("enable perf event: %w", err)
		}
	}
	return nil
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

// Stop stops counting, closes the counters and returns their sum.
func (c *Counter) Stop() (int64, error) {
	var first error
	for _, fd := range c.fds {
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_DISABLE, 0); err != nil && first == nil {
			first = fmt.Errorf("disable perf event: %w", err)
		}
	}
	total, err := c.Count()
	if first == nil {
		first = err
	}
	c.Close()
	return total, first
}

// Close stops counting and closes the counters.
func (c *Counter) Close() {
	for _, fd := range c.fds {
		_ = unix.Close(fd)
	}
	c.fds = nil
}
