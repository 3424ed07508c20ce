package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// perfEventAttr is struct perf_event_attr up to its first published size
// (PERF_ATTR_SIZE_VER0, 64 bytes), which the kernel accepts.
type perfEventAttr struct {
	Type         uint32
	Size         uint32
	Config       uint64
	SamplePeriod uint64
	SampleType   uint64
	ReadFormat   uint64
	Flags        uint64 // bit 0 disabled, bit 1 inherit
	WakeupEvents uint32
	BPType       uint32
	Config1      uint64
}

// Values of linux/perf_event.h.
const (
	perfTypeTracepoint = 2
	perfFlagDisabled   = 1 << 0
	perfFlagInherit    = 1 << 1
	perfFlagFDCloexec  = 1 << 3
	perfIOCEnable      = 0x2400
	perfIOCDisable     = 0x2401
	// perfAttachPasses bounds the passes over a process's threads that
	// catch threads created while the events were being opened.
	perfAttachPasses = 5
)

// tracepointID reads the id of syscallEvent from tracefs.
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
	return 0, fmt.Errorf("tracepoint %s: %w (is tracefs mounted?)", syscallEvent, last)
}

// openSyscallEvent opens a counter of syscallEvent on thread tid, off and
// inherited.
func openSyscallEvent(id uint64, tid int) (int, error) {
	attr := perfEventAttr{Type: perfTypeTracepoint, Config: id, Flags: perfFlagDisabled | perfFlagInherit}
	attr.Size = uint32(unsafe.Sizeof(attr))
	fd, _, errno := syscall.Syscall6(syscall.SYS_PERF_EVENT_OPEN, uintptr(unsafe.Pointer(&attr)),
		uintptr(tid), ^uintptr(0), ^uintptr(0), perfFlagFDCloexec, 0) // any CPU, no group
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// checkSyscallCounting reports whether system calls can be counted here:
// tracefs and the tracepoint present, perf events allowed (root, or
// kernel.perf_event_paranoid low enough).
func checkSyscallCounting() error {
	id, err := tracepointID()
	if err != nil {
		return err
	}
	fd, err := openSyscallEvent(id, syscall.Gettid())
	if err != nil {
		return fmt.Errorf("perf_event_open %s: %w (root, or sysctl kernel.perf_event_paranoid)", syscallEvent, err)
	}
	return syscall.Close(fd)
}

// startSyscallCounter opens a counter on every thread of pids, off.
// Threads created while the counters are being opened are caught by
// further passes; those created later inherit their creator's.
func startSyscallCounter(pids []int) (*syscallCounter, error) {
	id, err := tracepointID()
	if err != nil {
		return nil, err
	}
	c := &syscallCounter{}
	done := map[int]bool{}
	for range perfAttachPasses {
		fresh := false
		for tid := range threadsOf(pids) {
			if done[tid] {
				continue
			}
			done[tid], fresh = true, true
			fd, err := openSyscallEvent(id, tid)
			if err == syscall.ESRCH {
				continue // the thread has exited
			}
			if err != nil {
				_, _ = c.stop()
				return nil, fmt.Errorf("perf_event_open %s on thread %d: %w", syscallEvent, tid, err)
			}
			c.fds = append(c.fds, fd)
		}
		if !fresh {
			break
		}
	}
	if len(c.fds) == 0 {
		return nil, fmt.Errorf("count system calls: no thread of processes %v", pids)
	}
	return c, nil
}

// enable starts counting.
func (c *syscallCounter) enable() error {
	for _, fd := range c.fds {
		if err := ioctl(fd, perfIOCEnable); err != nil {
			return fmt.Errorf("enable perf event: %w", err)
		}
	}
	return nil
}

// stop stops counting, closes the counters and returns the sum: the
// threads' own calls and those of the threads and processes they created.
func (c *syscallCounter) stop() (int64, error) {
	var total int64
	var first error
	for _, fd := range c.fds {
		if err := ioctl(fd, perfIOCDisable); err != nil && first == nil {
			first = fmt.Errorf("disable perf event: %w", err)
		}
		var buf [8]byte
		if n, err := syscall.Read(fd, buf[:]); (err != nil || n != len(buf)) && first == nil {
			first = fmt.Errorf("read perf event: %d bytes, %v", n, err)
		}
		total += int64(binary.NativeEndian.Uint64(buf[:]))
		_ = syscall.Close(fd)
	}
	c.fds = nil
	return total, first
}

func ioctl(fd int, req uintptr) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, 0); errno != 0 {
		return errno
	}
	return nil
}
