//go:build !linux

package sockpoll

import "golang.org/x/sys/unix"

// pollNow polls fds without waiting: poll with a zero timeout (darwin and
// the BSDs have no ppoll in x/sys/unix, and need none for a probe that
// does not wait).
func pollNow(fds []unix.PollFd) (int, error) {
	return unix.Poll(fds, 0)
}
