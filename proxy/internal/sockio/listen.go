package sockio

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listen opens a TCP listener, with SO_REUSEPORT when reuse is set so a
// new tether can listen on the same address before the old one stops
// (hitless restart).
func Listen(addr string, reuse bool) (net.Listener, error) {
	lc := net.ListenConfig{}
	if reuse {
		lc.Control = setReusePort
	}
	return lc.Listen(context.Background(), "tcp", addr)
}

// setReusePort is the listener's Control: SO_REUSEPORT on the socket.
func setReusePort(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}
