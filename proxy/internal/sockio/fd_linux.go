//go:build linux

package sockio

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ReadFD and WriteFD are read(2) and write(2) on a non-blocking socket,
// made as raw system calls: they never block, so the loop's goroutine keeps
// its P through them. Through syscall.Syscall each call would mark the P as
// in a system call; on a loaded machine a thread descheduled there has its P
// handed to another thread by sysmon, a wake-up and a hand-off back per
// event, and sysmon keeps polling every 20 µs while it finds such Ps.
func ReadFD(fd int32, p []byte) (int, error) { return rawRW(unix.SYS_READ, fd, p) }

func WriteFD(fd int32, p []byte) (int, error) { return rawRW(unix.SYS_WRITE, fd, p) }

// rawRW is ReadFD and WriteFD: trap is SYS_READ or SYS_WRITE.
func rawRW(trap uintptr, fd int32, p []byte) (int, error) {
	for {
		r, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(bufPtr(p)), uintptr(len(p)))
		switch e {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return 0, e
	}
}

// EpollNow is epoll_wait(2) with a zero timeout, a raw system call as
// ReadFD's.
func EpollNow(epfd int, events []unix.EpollEvent) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// bufPtr is p's first byte (a placeholder when p is empty), for a system
// call's argument: the conversion to uintptr stays in the call expression.
func bufPtr(p []byte) unsafe.Pointer {
	if len(p) == 0 {
		return unsafe.Pointer(&zeroByte)
	}
	return unsafe.Pointer(&p[0])
}

var zeroByte byte

// HungUp reports a socket whose peer closed or reset it with nothing left
// to read: a one-byte peek finds the end of the stream, or an error.
func HungUp(fd int) bool {
	var b [1]byte
	for {
		n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			return true
		}
		return n == 0
	}
}
