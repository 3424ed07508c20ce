//go:build linux

package sockio

import "golang.org/x/sys/unix"

// hangupEvents are the poll events that say a peer has hung up: its end of
// stream (POLLRDHUP, Linux), a hang-up or a socket error (a reset).
const hangupEvents = unix.POLLRDHUP | unix.POLLHUP | unix.POLLERR

// pollNow polls fds without waiting: ppoll with a zero timeout. unix.Poll
// on Linux is itself ppoll behind a millisecond-to-Timespec conversion;
// the zero Timespec here lives on the caller's stack once inlined.
func pollNow(fds []unix.PollFd) (int, error) {
	var zero unix.Timespec
	return unix.Ppoll(fds, &zero, nil)
}
