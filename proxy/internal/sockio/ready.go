package sockio

import (
	"crypto/tls"
	"net"
	"syscall"

	"github.com/tether-lb/tether/internal/sockpoll"
	"github.com/tether-lb/tether/tlsterm"
	"golang.org/x/sys/unix"
)

// WaitReadable blocks until c has bytes to read, end-of-stream or an error, without
// consuming anything and without holding a buffer, honouring c's read deadline
// (returns the deadline error, os.ErrDeadlineExceeded, when it passes). For a conn
// that is not a syscall.Conn (e.g. *tls.Conn, net.Pipe) it returns nil at once.
//
// The deadline error is wrapped in a *net.OpError; test it with
// errors.Is(err, os.ErrDeadlineExceeded). Closing c from another goroutine
// wakes the wait with net.ErrClosed. End-of-stream and socket errors
// (a reset) are not returned: WaitReadable returns nil and the caller's next
// Read reports them. A caller with a buffered reader in front of c must check
// that reader's Buffered() first: WaitReadable sees only the socket. For a
// *tls.Conn, wait only after a Read on it failed on its deadline (crypto/tls
// may hold whole records above the socket otherwise; see tlsterm.Raw).
//
// It allocates nothing for *net.TCPConn and *net.UnixConn, so an idle
// keep-alive connection or spliced session can wait in it for free. Only one
// goroutine should wait on or read from c at a time.
func WaitReadable(c net.Conn) error {
	switch c := c.(type) {
	case *net.TCPConn:
		return waitTCP(c)
	case *RawTCP:
		return waitTCP(c.TCPConn)
	case *tls.Conn:
		// Callers come here after a Read failed on its deadline: the TLS
		// connection then holds no whole record above its socket (see
		// tlsterm.Raw), and the socket's readability is its own.
		if raw := tlsterm.Raw(c); raw != net.Conn(c) {
			return WaitReadable(raw)
		}
		return nil
	case *net.UnixConn:
		return waitUnix(c)
	case syscall.Conn:
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		return rc.Read(readyProbe)
	}
	return nil
}

// waitTCP is WaitReadable for a *net.TCPConn. Calling SyscallConn on the
// concrete type lets the compiler devirtualize rc.Read and keep the RawConn
// on the stack, where the interface path would allocate it per call.
func waitTCP(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(readyProbe)
}

// waitUnix is waitTCP for a *net.UnixConn.
func waitUnix(c *net.UnixConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(readyProbe)
}

// ReadableNow reports, without waiting, whether c has bytes (or an end) to
// read. It allocates; Shutdown uses it, not the request path.
func ReadableNow(c net.Conn) bool {
	c = tlsterm.Raw(c)
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ready := false
	if rc.Control(func(fd uintptr) { ready = readyProbe(fd) }) != nil {
		return false
	}
	return ready
}

// ReadableFD is ReadableNow for a bare descriptor.
func ReadableFD(fd int) bool { return readyProbe(uintptr(fd)) }

// readyProbe reports whether fd is readable, without consuming anything and
// without blocking: a zero-timeout poll for POLLIN (sockpoll.Readable).
// Data, end-of-stream, a hang-up or a socket error all end the wait (true);
// nothing returns false so the runtime poller parks the goroutine until the
// socket becomes readable, then calls readyProbe again.
//
// The probe is what makes the wait correct: syscall.RawConn.Read resets the
// poller's readiness before its first call, so bytes queued before the wait
// are only seen by looking at the socket. It is a poll rather than a one-byte
// recvfrom(MSG_PEEK|MSG_DONTWAIT) because a peek consumes a pending socket
// error: a reset would then read as a plain EOF and be forwarded as a
// half-close. readyProbe is a plain function (passing it allocates nothing)
// and its arguments live on its own stack.
func readyProbe(fd uintptr) bool {
	readable, err := sockpoll.Readable(int(fd))
	return err != nil || readable // an error (EBADF and the like): the caller's Read reports it
}

// WaitHangup blocks until c's peer hangs up (true: end of stream, reset),
// without consuming anything, honouring c's read deadline: it returns false
// with the deadline error when the deadline passes, and with net.ErrClosed
// when c is closed. Bytes the peer sends meanwhile (a pipelined request, a
// TLS client's close_notify alert before its FIN) do not end the wait. For
// a *tls.Conn it watches the socket under it. A conn without a descriptor
// returns false and nil at once.
func WaitHangup(c net.Conn) (bool, error) {
	sc, ok := tlsterm.Raw(c).(syscall.Conn)
	if !ok {
		return false, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, err
	}
	hup := false
	err = rc.Read(func(fd uintptr) bool {
		pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | hangupEvents}}
		switch n, err := sockpoll.Now(pfd[:]); {
		case err != nil:
			return true
		case n == 0:
			return false // nothing yet: park until the socket's next event
		}
		// Bytes alone: park again; the poller is edge-triggered, so the
		// hang-up that may follow wakes this wait.
		hup = pfd[0].Revents&hangupEvents != 0
		return hup
	})
	return hup, err
}
