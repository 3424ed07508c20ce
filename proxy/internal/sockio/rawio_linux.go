//go:build linux

package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// RawIO reads and writes a *net.TCPConn with raw system calls (ReadFD,
// WriteFD) through its syscall.RawConn, so the conn's deadlines, closing
// and Go's poller work as for Read and Write, but the goroutine's thread
// keeps its P through each call: under load a thread descheduled inside a
// read or write no longer has its P handed to another thread by sysmon, a
// wake-up and a hand-off back per call (BENCHMARKS.md has the figures). One
// read and one write may run at once, as on a net.Conn. The zero RawIO is
// unset: Use says whether it holds a conn.
type RawIO struct {
	rc   syscall.RawConn
	c    net.Conn
	r, w rawOp
}

// rawOp is the state of one read or write, for the function RawConn calls.
type rawOp struct {
	p   []byte
	n   int
	err error
	fn  func(uintptr) bool // readOnce or writeAll, bound once
	try func(uintptr) bool // readTry or writeTry, bound once: they never wait
	pre []byte             // reads: bytes the next read writes first (sendBeforeRead)
	// preFailed: writing pre failed; err is the write's
	preFailed bool
}

// set makes r read and write c through rc, c's RawConn (RawConnOf), or
// unsets r when rc is nil. Getting a RawConn allocates: callers keep one per
// socket.
func (r *RawIO) Set(c net.Conn, rc syscall.RawConn) {
	r.rc, r.c = nil, nil
	if rc == nil {
		return
	}
	if r.r.fn == nil {
		r.r.fn, r.w.fn = r.r.readOnce, r.w.writeAll
		r.r.try, r.w.try = r.r.readTry, r.w.writeTry
	}
	r.rc, r.c = rc, c
}

// RawConnOf is the RawConn RawIO uses for c: c's own for a *net.TCPConn,
// else nil.
func RawConnOf(c net.Conn) syscall.RawConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

func (r *RawIO) Use() bool { return r.rc != nil }

func (o *rawOp) readOnce(fd uintptr) bool {
	if o.pre != nil {
		return o.writePre(fd)
	}
	o.n, o.err = ReadFD(int32(fd), o.p)
	return o.err != unix.EAGAIN
}

// readTry is readOnce that never waits: EAGAIN ends it too.
func (o *rawOp) readTry(fd uintptr) bool {
	o.n, o.err = ReadFD(int32(fd), o.p)
	return true
}

// writeTry is writeAll that never waits: EAGAIN ends it too, with what
// went out so far in n.
func (o *rawOp) writeTry(fd uintptr) bool {
	for len(o.p) > 0 {
		n, err := WriteFD(int32(fd), o.p)
		o.n += n
		o.p = o.p[n:]
		switch {
		case err != nil:
			o.err = err
			return true
		case n == 0:
			o.err = io.ErrShortWrite
			return true
		}
	}
	return true
}

// writePre writes o.pre at the start of a read. RawConn.Read has reset the
// socket's readiness before calling it, so readiness from now on, an answer
// to these bytes included, wakes the wait that follows: when all of pre
// goes out, the read waits at once instead of first reading nothing (an
// answer cannot be there yet). After a short write the rest stays in o.pre
// and the read ends with errPreUnsent; a failed write ends it with the
// write's error. The readiness a FIN brought before the read began is lost
// with the reset: a node that closed a pooled connection answers the write
// with a reset, which wakes the wait, but one that only half-closed it and
// still reads is noticed when the hot window ends (awaitAnswer looks again),
// not at once.
func (o *rawOp) writePre(fd uintptr) bool {
	n, err := WriteFD(int32(fd), o.pre)
	o.pre = o.pre[n:]
	switch {
	case len(o.pre) == 0:
		o.pre = nil
		return false
	case err != nil && err != unix.EAGAIN:
		o.pre, o.err, o.preFailed = nil, err, true
	default:
		o.err = errPreUnsent
	}
	return true
}

// errPreUnsent ends a read whose bytes to send first did not all go out
// (unsent has the rest).
var errPreUnsent = errors.New("proxy: bytes to send before the read did not all go out")

// sendBeforeRead makes the next read write b first (writePre), in the same
// RawConn.Read: a request and the wait for its answer cost one write, the
// wait and one read. After that read, unsent returns what did not go out.
func (r *RawIO) SendBeforeRead(b []byte) { r.r.pre = b }

// unsent returns and forgets what the last read did not write of
// sendBeforeRead's bytes (all of them when the read ended before trying:
// a deadline already passed, a closed conn); nil when all went out or the
// write failed (the read's error).
func (r *RawIO) Unsent() []byte {
	b := r.r.pre
	r.r.pre = nil
	return b
}

func (o *rawOp) writeAll(fd uintptr) bool {
	for len(o.p) > 0 {
		n, err := WriteFD(int32(fd), o.p)
		o.n += n
		o.p = o.p[n:]
		switch {
		case err == unix.EAGAIN:
			return false
		case err != nil:
			o.err = err
			return true
		case n == 0: // write(2) on a socket moves a byte or fails; never spin
			o.err = io.ErrShortWrite
			return true
		}
	}
	return true
}

// read is net.Conn's Read: io.EOF at end of stream, other errors as
// *net.OpError.
func (r *RawIO) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	o := &r.r
	o.p, o.n, o.err, o.preFailed = p, 0, nil, false
	err := r.rc.Read(o.fn)
	n, rerr, wfail := o.n, o.err, o.preFailed
	o.p, o.err = nil, nil
	switch {
	case err != nil:
		return 0, r.opError("read", err)
	case rerr == errPreUnsent:
		return 0, rerr
	case rerr != nil && wfail:
		return 0, r.opError("write", os.NewSyscallError("write", rerr))
	case rerr != nil:
		return 0, r.opError("read", os.NewSyscallError("read", rerr))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// tryRead is read that never waits: ErrWouldBlock when nothing is there.
// A deadline that passed before it (one set earlier) ends it as it ends
// read, with a timeout.
func (r *RawIO) tryRead(p []byte) (int, error) {
	o := &r.r
	o.p, o.n, o.err = p, 0, nil
	err := r.rc.Read(o.try)
	n, rerr := o.n, o.err
	o.p, o.err = nil, nil
	switch {
	case err != nil:
		return 0, r.opError("read", err)
	case rerr == unix.EAGAIN:
		return 0, ErrWouldBlock
	case rerr != nil:
		return 0, r.opError("read", os.NewSyscallError("read", rerr))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// tryWrite is write that never waits: what went out, and ErrWouldBlock
// when the socket's buffer filled before all of p did.
func (r *RawIO) tryWrite(p []byte) (int, error) {
	o := &r.w
	o.p, o.n, o.err = p, 0, nil
	err := r.rc.Write(o.try)
	n, werr := o.n, o.err
	o.p, o.err = nil, nil
	switch {
	case err != nil:
		return n, r.opError("write", err)
	case werr == unix.EAGAIN:
		return n, ErrWouldBlock
	case werr != nil:
		return n, r.opError("write", os.NewSyscallError("write", werr))
	}
	return n, nil
}

// sending reports whether the next read first writes bytes
// (SendBeforeRead): its answer cannot be there yet.
func (r *RawIO) sending() bool { return r.r.pre != nil }

// write is net.Conn's Write: all of p, or an error.
func (r *RawIO) write(p []byte) (int, error) {
	o := &r.w
	o.p, o.n, o.err = p, 0, nil
	err := r.rc.Write(o.fn)
	n, werr := o.n, o.err
	o.p, o.err = nil, nil
	switch {
	case err != nil:
		return n, r.opError("write", err)
	case werr != nil:
		return n, r.opError("write", os.NewSyscallError("write", werr))
	}
	return n, nil
}

// opError wraps err as net.Conn's Read and Write do. An error of the
// RawConn itself (deadline, closed) is a *net.OpError already: its cause is
// rewrapped under op, so messages read as Read's ("read tcp A->B: i/o
// timeout").
func (r *RawIO) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: r.c.LocalAddr(), Addr: r.c.RemoteAddr(), Err: err}
}

// RawTCP is a *net.TCPConn read and written through RawIO; its other
// methods (deadlines, CloseWrite, SyscallConn) are the conn's.
type RawTCP struct {
	*net.TCPConn
	io RawIO
}

func (c *RawTCP) Read(p []byte) (int, error)  { return c.io.read(p) }
func (c *RawTCP) Write(p []byte) (int, error) { return c.io.write(p) }

// WithRawIO returns c read and written with raw system calls when it is a
// *net.TCPConn, else c.
func WithRawIO(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc := RawConnOf(tc)
	if rc == nil {
		return c
	}
	r := &RawTCP{TCPConn: tc}
	r.io.Set(tc, rc)
	return r
}
