//go:build linux

package sockio

import "golang.org/x/sys/unix"

// hangupEvents are the poll events that say a peer has hung up: its end of
// stream (POLLRDHUP, Linux), a hang-up or a socket error (a reset).
const hangupEvents = unix.POLLRDHUP | unix.POLLHUP | unix.POLLERR
