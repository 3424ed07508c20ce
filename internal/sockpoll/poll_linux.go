//go:build linux

package sockpoll

import "golang.org/x/sys/unix"

// pollNow polls fds without waiting: ppoll with a zero timeout. unix.Poll
// on Linux is itself ppoll behind a millisecond-to-Timespec conversion;
// the zero Timespec here lives on the caller's stack once inlined.
func pollNow(fds []unix.PollFd) (int, error) {
	var zero unix.Timespec
	return unix.Ppoll(fds, &zero, nil)
}
