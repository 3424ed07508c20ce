//go:build linux

package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Warmer makes a cold connection a net.Conn when a read or write on it
// must wait.
type Warmer interface {
	// WarmUp returns the connection as a net.Conn and that conn's RawConn.
	// After it the bare descriptor the ColdConn was bound to is no longer
	// used; on error the connection has no socket left.
	WarmUp() (net.Conn, syscall.RawConn, error)
}

// ColdConn serves a connection held as a bare descriptor (cold) without
// making it a net.Conn: reads and writes go to the descriptor as long as
// none has to wait, which is the whole of a request whose head came in one
// piece and whose answer fits the socket's buffer. The first read or write
// that would wait makes the connection warm (Warmer.WarmUp) and waits on
// the net.Conn it gets; that and every later call go to it. Deadlines set
// while cold are kept for that moment: a call that does not wait needs
// none. One goroutine uses it at a time; it is reused with Bind.
type ColdConn struct {
	fd       int
	w        Warmer
	raw      coldRaw
	nc       net.Conn        // the warm conn, once made
	rc       syscall.RawConn // nc's
	rdl, wdl time.Time       // deadlines set while cold
}

// coldRaw is ColdConn's syscall.RawConn: RawIO reads and writes through it.
type coldRaw struct{ cc *ColdConn }

// Bind points cc at the descriptor fd of a cold connection, warmed up by w
// when it must wait, and returns the conn and RawConn to read and write it
// through.
func (cc *ColdConn) Bind(fd int, w Warmer) (net.Conn, syscall.RawConn) {
	*cc = ColdConn{fd: fd, w: w}
	cc.raw.cc = cc
	return cc, &cc.raw
}

// Reset lets go of the connection.
func (cc *ColdConn) Reset() { *cc = ColdConn{} }

// WarmUp makes the connection a net.Conn, once, with the deadlines set so
// far. After an error the bare descriptor is gone (the Warmer closed it):
// every later call on the descriptor fails (EBADF) rather than reach
// whatever socket reuses its number.
func (cc *ColdConn) WarmUp() error {
	if cc.nc != nil {
		return nil
	}
	nc, rc, err := cc.w.WarmUp()
	cc.fd = -1
	if err != nil {
		return err
	}
	cc.nc, cc.rc = nc, rc
	if rc == nil {
		return errNotTCP
	}
	if !cc.rdl.IsZero() {
		if err := nc.SetReadDeadline(cc.rdl); err != nil {
			return err
		}
	}
	if !cc.wdl.IsZero() {
		return nc.SetWriteDeadline(cc.wdl)
	}
	return nil
}

// errNotTCP: the descriptor of a cold connection did not come back as a
// TCP connection.
var errNotTCP = errors.New("sockio: a cold connection came back as another kind of connection")

func (cc *ColdConn) Read(p []byte) (int, error) {
	if cc.nc == nil {
		n, err := ReadFD(int32(cc.fd), p)
		switch {
		case err == unix.EAGAIN:
		case err != nil:
			return 0, cc.opError("read", err)
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		default:
			return n, nil
		}
		if err := cc.WarmUp(); err != nil {
			return 0, cc.opError("read", err)
		}
	}
	return cc.nc.Read(p)
}

func (cc *ColdConn) Write(p []byte) (int, error) {
	done := 0
	for cc.nc == nil && done < len(p) {
		n, err := WriteFD(int32(cc.fd), p[done:])
		done += n
		switch {
		case err == unix.EAGAIN:
			if err := cc.WarmUp(); err != nil {
				return done, cc.opError("write", err)
			}
		case err != nil:
			return done, cc.opError("write", err)
		case n == 0: // a socket's write moves a byte or fails; never spin
			return done, cc.opError("write", io.ErrShortWrite)
		}
	}
	if done == len(p) {
		return done, nil
	}
	n, err := cc.nc.Write(p[done:])
	return done + n, err
}

// Close closes the warm conn; a cold descriptor is its owner's to close.
func (cc *ColdConn) Close() error {
	if cc.nc != nil {
		return cc.nc.Close()
	}
	return nil
}

func (cc *ColdConn) LocalAddr() net.Addr {
	if cc.nc != nil {
		return cc.nc.LocalAddr()
	}
	sa, err := unix.Getsockname(cc.fd)
	if err != nil {
		return nil
	}
	return tcpAddrOf(sa)
}

func (cc *ColdConn) RemoteAddr() net.Addr {
	if cc.nc != nil {
		return cc.nc.RemoteAddr()
	}
	sa, err := unix.Getpeername(cc.fd)
	if err != nil {
		return nil
	}
	return tcpAddrOf(sa)
}

func (cc *ColdConn) SetDeadline(t time.Time) error {
	if cc.nc != nil {
		return cc.nc.SetDeadline(t)
	}
	cc.rdl, cc.wdl = t, t
	return nil
}

func (cc *ColdConn) SetReadDeadline(t time.Time) error {
	if cc.nc != nil {
		return cc.nc.SetReadDeadline(t)
	}
	cc.rdl = t
	return nil
}

func (cc *ColdConn) SetWriteDeadline(t time.Time) error {
	if cc.nc != nil {
		return cc.nc.SetWriteDeadline(t)
	}
	cc.wdl = t
	return nil
}

// opError wraps err as net.Conn's methods do.
func (cc *ColdConn) opError(op string, err error) error {
	if _, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError(op, err)
	}
	return &net.OpError{Op: op, Net: "tcp", Source: cc.LocalAddr(), Addr: cc.RemoteAddr(), Err: err}
}

// tcpAddrOf is sa as a *net.TCPAddr (nil for other kinds).
func tcpAddrOf(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return nil
}

// Control runs f on the descriptor (the warm conn's, once made).
func (r *coldRaw) Control(f func(fd uintptr)) error {
	cc := r.cc
	if cc.rc != nil {
		return cc.rc.Control(f)
	}
	f(uintptr(cc.fd))
	return nil
}

// Read calls f on the descriptor; when f asks to wait (returns false), the
// connection is made warm and its RawConn's Read waits and calls f again.
func (r *coldRaw) Read(f func(fd uintptr) bool) error {
	cc := r.cc
	if cc.rc == nil {
		if f(uintptr(cc.fd)) {
			return nil
		}
		if err := cc.WarmUp(); err != nil {
			return cc.opError("read", err)
		}
	}
	return cc.rc.Read(f)
}

// Write is Read for writing.
func (r *coldRaw) Write(f func(fd uintptr) bool) error {
	cc := r.cc
	if cc.rc == nil {
		if f(uintptr(cc.fd)) {
			return nil
		}
		if err := cc.WarmUp(); err != nil {
			return cc.opError("write", err)
		}
	}
	return cc.rc.Write(f)
}
