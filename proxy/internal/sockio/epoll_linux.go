//go:build linux

package sockio

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Epoll is the epoll instance of one of tether's own loops (the splice
// loops, the http loops): its descriptor, non-blocking and parked in Go's
// poller (File, RC), so the loop's goroutine waits there without holding a
// thread and its timeouts are File's read deadline; and an eventfd,
// registered under a slot of the caller's, through which other goroutines
// wake it.
type Epoll struct {
	FD   int             // the epoll descriptor; File owns and closes it
	Wake int             // the eventfd; the caller closes it
	File *os.File        // FD in Go's poller
	RC   syscall.RawConn // File's
}

// NewEpoll creates an Epoll named name (for the runtime's poller), its
// eventfd registered for reading with wakeSlot in the event's Fd field.
// On error nothing stays open.
func NewEpoll(name string, wakeSlot int32) (*Epoll, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeSlot}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(evfd)
		unix.Close(epfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(evfd)
		unix.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(epfd), name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		unix.Close(evfd)
		return nil, err
	}
	return &Epoll{FD: epfd, Wake: evfd, File: f, RC: rc}, nil
}
