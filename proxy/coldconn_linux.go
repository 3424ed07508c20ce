//go:build linux

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/tether-lb/tether/proxy/internal/sockio"
	"golang.org/x/sys/unix"
)

// coldConn serves a cold connection (a bare descriptor on its loop,
// httploop.go) without making it a net.Conn: reads and writes go to the
// descriptor as long as none has to wait, which is the whole of a request
// whose head came in one piece and whose answer fits the socket's buffer.
// The first read or write that would wait makes the connection warm
// (httpLoops.warmUp) and waits on the net.Conn it gets; that and every
// later call go to it. Deadlines set while cold are kept for that moment:
// a call that does not wait needs none. It is the exchange's, bound to
// one connection per burst; the serving goroutine alone uses it.
type coldConn struct {
	c        *conn
	raw      coldRaw
	nc       net.Conn        // the warm conn, once made
	rc       syscall.RawConn // nc's
	rdl, wdl time.Time       // deadlines set while cold
}

// coldRaw is coldConn's syscall.RawConn: RawIO reads and writes through it.
type coldRaw struct{ cc *coldConn }

// bind points cc at c, busy and cold, and returns the conn and RawConn an
// exchange reads and writes c through.
func (cc *coldConn) bind(c *conn) (net.Conn, syscall.RawConn) {
	*cc = coldConn{c: c}
	cc.raw.cc = cc
	return cc, &cc.raw
}

// reset lets go of the connection.
func (cc *coldConn) reset() { *cc = coldConn{} }

// warmUp makes the connection a net.Conn, once, with the deadlines set so
// far.
func (cc *coldConn) warmUp() error {
	if cc.nc != nil {
		return nil
	}
	c := cc.c
	if !c.lc.cold { // warmed through the conn (warmClient)
		cc.nc, cc.rc = c.nc, c.raw
		return cc.applyDeadlines()
	}
	if err := c.s.http.warmUp(c); err != nil {
		// Its socket is gone with the descriptor: the exchange ends, and
		// so does the connection.
		c.s.errLog.Warn().Err(err).Str("remote", c.remoteIP).Msg("http loop: connection lost as it was made a net.Conn")
		return err
	}
	cc.nc, cc.rc = c.nc, c.raw
	if cc.rc == nil {
		return errNotTCP
	}
	return cc.applyDeadlines()
}

func (cc *coldConn) applyDeadlines() error {
	if !cc.rdl.IsZero() {
		if err := cc.nc.SetReadDeadline(cc.rdl); err != nil {
			return err
		}
	}
	if !cc.wdl.IsZero() {
		return cc.nc.SetWriteDeadline(cc.wdl)
	}
	return nil
}

// errNotTCP: the descriptor of a cold connection did not come back as a
// TCP connection.
var errNotTCP = errors.New("proxy: a cold connection came back as another kind of connection")

func (cc *coldConn) fd() int { return int(cc.c.lc.fd) }

func (cc *coldConn) Read(p []byte) (int, error) {
	if cc.nc == nil {
		n, err := sockio.ReadFD(int32(cc.fd()), p)
		switch {
		case err == unix.EAGAIN:
		case err != nil:
			return 0, cc.opError("read", err)
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		default:
			return n, nil
		}
		if err := cc.warmUp(); err != nil {
			return 0, cc.opError("read", err)
		}
	}
	return cc.nc.Read(p)
}

func (cc *coldConn) Write(p []byte) (int, error) {
	done := 0
	for cc.nc == nil && done < len(p) {
		n, err := sockio.WriteFD(int32(cc.fd()), p[done:])
		done += n
		switch {
		case err == unix.EAGAIN:
			if err := cc.warmUp(); err != nil {
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

// Close closes the warm conn; a cold descriptor is the connection's to
// close (conn.close).
func (cc *coldConn) Close() error {
	if cc.nc != nil {
		return cc.nc.Close()
	}
	return nil
}

func (cc *coldConn) LocalAddr() net.Addr {
	if cc.nc != nil {
		return cc.nc.LocalAddr()
	}
	sa, err := unix.Getsockname(cc.fd())
	if err != nil {
		return nil
	}
	return tcpAddrOf(sa)
}

func (cc *coldConn) RemoteAddr() net.Addr {
	if cc.nc != nil {
		return cc.nc.RemoteAddr()
	}
	sa, err := unix.Getpeername(cc.fd())
	if err != nil {
		return nil
	}
	return tcpAddrOf(sa)
}

func (cc *coldConn) SetDeadline(t time.Time) error {
	if cc.nc != nil {
		return cc.nc.SetDeadline(t)
	}
	cc.rdl, cc.wdl = t, t
	return nil
}

func (cc *coldConn) SetReadDeadline(t time.Time) error {
	if cc.nc != nil {
		return cc.nc.SetReadDeadline(t)
	}
	cc.rdl = t
	return nil
}

func (cc *coldConn) SetWriteDeadline(t time.Time) error {
	if cc.nc != nil {
		return cc.nc.SetWriteDeadline(t)
	}
	cc.wdl = t
	return nil
}

// opError wraps err as net.Conn's methods do.
func (cc *coldConn) opError(op string, err error) error {
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
	f(uintptr(cc.fd()))
	return nil
}

// Read calls f on the descriptor; when f asks to wait (returns false), the
// connection is made warm and its RawConn's Read waits and calls f again.
func (r *coldRaw) Read(f func(fd uintptr) bool) error {
	cc := r.cc
	if cc.rc == nil {
		if f(uintptr(cc.fd())) {
			return nil
		}
		if err := cc.warmUp(); err != nil {
			return cc.opError("read", err)
		}
	}
	return cc.rc.Read(f)
}

// Write is Read for writing.
func (r *coldRaw) Write(f func(fd uintptr) bool) error {
	cc := r.cc
	if cc.rc == nil {
		if f(uintptr(cc.fd())) {
			return nil
		}
		if err := cc.warmUp(); err != nil {
			return cc.opError("write", err)
		}
	}
	return cc.rc.Write(f)
}
