//go:build unix

package sockio

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// DupFD returns a close-on-exec duplicate of c's descriptor (fcntl
// F_DUPFD_CLOEXEC), leaving c as it was: a splice loop takes a session's
// descriptors out of Go's poller with it, a hand-over copies an idle
// connection's for the new process.
func DupFD(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(sysfd uintptr) {
		fd, derr = unix.FcntlInt(sysfd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl", derr)
	}
	return fd, nil
}

// Dup returns a close-on-exec duplicate of the descriptor fd.
func Dup(fd int) (int, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("fcntl", err)
	}
	return nfd, nil
}

// CloseFD closes a bare descriptor (a cold connection's); epoll forgets it
// with it.
func CloseFD(fd int) { unix.Close(fd) }
