//go:build !linux

package sockio

import "golang.org/x/sys/unix"

// hangupEvents are the poll events that say a peer has hung up. Without
// Linux's POLLRDHUP, an end of stream with the socket still open one way is
// not among them.
const hangupEvents = unix.POLLHUP | unix.POLLERR

// pollNow polls fds without waiting: poll with a zero timeout (darwin and
// the BSDs have no ppoll in x/sys/unix, and need none for a probe that
// does not wait).
func pollNow(fds []unix.PollFd) (int, error) {
	return unix.Poll(fds, 0)
}
