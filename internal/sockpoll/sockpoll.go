package sockpoll

import "golang.org/x/sys/unix"

// Readable reports whether fd has something to read: bytes, an end of
// stream, a hang-up or a socket error (POLLIN, and the events poll always
// reports). An error (EBADF and the like) is returned as it came; the
// caller's next read on fd reports it too.
func Readable(fd int) (bool, error) {
	pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := Now(pfd[:])
	return n > 0, err
}

// Now polls fds without waiting, again after EINTR.
func Now(fds []unix.PollFd) (int, error) {
	for {
		n, err := pollNow(fds)
		if err != unix.EINTR {
			return n, err
		}
	}
}
