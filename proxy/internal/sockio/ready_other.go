//go:build !linux

package sockio

import "golang.org/x/sys/unix"

// hangupEvents are the poll events that say a peer has hung up. Without
// Linux's POLLRDHUP, an end of stream with the socket still open one way is
// not among them.
const hangupEvents = unix.POLLHUP | unix.POLLERR
