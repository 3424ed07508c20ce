package sockio

import (
	"errors"
	"math"
	"net"
	"syscall"
	"time"
)

// DeadlineConn bounds every read and write. Writes, and reads of a body,
// get a sliding deadline: it moves before a read or write that follows a
// pause, at most every eighth of its timeout, so each wait is bounded without
// a deadline update per call. Reads of a head get a fixed deadline instead:
// the whole head must arrive within its timeout (a client dribbling bytes
// cannot hold it open). Reads of a request body may also have to keep up a
// minimum rate (SetBodyRate): a client sending a byte now and then cannot
// hold it open either. A new timeout or limit goes on the socket with the
// next read, not before: a head or answer already buffered above the
// socket is read without touching its deadline.
type DeadlineConn struct {
	net.Conn
	Raw                       RawIO // set for a TCP conn: its reads and writes as raw system calls
	readTimeout, writeTimeout time.Duration
	readSet, writeSet         int64  // unix nanos of the deadline last set
	readFixed                 bool   // the read deadline does not slide
	prefix                    []byte // served before the conn's own bytes (SetPrefix)

	// With minRate above zero, no read ends later than rateFrom plus a
	// second per minRate bytes read since SetBodyRate (rateRead).
	minRate   int64 // bytes a second; 0: no minimum
	rateFrom  int64 // unix nanos: when the body began, plus its grace
	rateRead  int64
	rateBound bool // the deadline last set was the rate's: reads move it each time

	// Lazy mode (SetLazy): a deadline goes on the socket only before a read
	// or write that would wait, so a read that finds its bytes and a write
	// that fits cost no deadline update at all.
	lazy    bool
	tryNext bool  // the next read does not wait (TryNext)
	readAt  int64 // fixed: unix nanos of the read deadline to set before a read (lazy: a wait)
	slack   int64 // fixed: how much earlier than readAt a deadline already on the socket may be (an eighth of the limit)
	armed   bool  // fixed: readAt is on the socket, or a deadline within slack before it
	onSock  int64 // unix nanos of the read deadline d last set on the socket; 0: unknown (Reset, RearmRead)
	full    bool  // the last lazy read filled its buffer: more may wait in the socket
}

// ErrWouldBlock is what a read made after TryNext returns when the socket
// has nothing to read.
var ErrWouldBlock = errors.New("sockio: nothing to read yet")

// Reset points d at c. rc is c's RawConn for raw reads and writes
// (RawConnOf, kept per socket), or nil.
func (d *DeadlineConn) Reset(c net.Conn, rc syscall.RawConn, read, write time.Duration) {
	d.Conn, d.readTimeout, d.writeTimeout, d.readSet, d.writeSet, d.readFixed, d.prefix = c, read, write, 0, 0, false, nil
	d.minRate, d.rateBound = 0, false
	d.lazy, d.tryNext, d.readAt, d.armed, d.full, d.onSock = false, false, 0, false, false, 0
	d.Raw.Set(c, rc)
}

// SetLazy switches lazy mode on for a conn with raw I/O (Reset switches it
// off): reads and writes first try without waiting, and the deadline their
// timeouts call for is set on the socket only when they would wait. The
// socket's deadline in between is whatever was set last (maybe long
// passed): a read or write that a passed deadline ends before it began sets
// the one it owes and tries again. Reads under a minimum rate (SetBodyRate)
// set their deadlines as outside lazy mode.
func (d *DeadlineConn) SetLazy() { d.lazy = d.Raw.Use() }

// TryNext makes the next read in lazy mode return ErrWouldBlock instead of
// waiting when the socket has nothing: the caller waits for readiness
// elsewhere (an epoll loop).
func (d *DeadlineConn) TryNext() { d.tryNext = d.lazy }

// Full reports whether the last read in lazy mode filled its buffer: the
// socket may hold more than it took, so readiness already reported may not
// come again.
func (d *DeadlineConn) Full() bool { return d.full }

// SetReadTimeout makes reads slide a deadline of t. The socket gets it
// with the next read (in lazy mode, the next read that waits): an answer
// already buffered above the socket costs no deadline update.
func (d *DeadlineConn) SetReadTimeout(t time.Duration) {
	d.readTimeout, d.readFixed, d.minRate, d.rateBound = t, false, 0, false
	d.readSet = 0 // set before the next read (lazy: the next that waits)
}

// SetBodyRate is SetReadTimeout(t) for a request body that must also
// average minRate bytes a second once grace has passed: a read ends by now
// + grace + n/minRate at the latest, n being the bytes read from now on
// (Apache's mod_reqtimeout MinRate reads a body so). minRate 0 or less is
// SetReadTimeout alone.
func (d *DeadlineConn) SetBodyRate(t, grace time.Duration, minRate int64) {
	d.SetReadTimeout(t)
	if minRate <= 0 {
		return
	}
	if d.readSet == 0 { // the rate counts from now
		now := time.Now()
		d.readSet = now.UnixNano()
		d.setRead(now.Add(t))
	}
	d.minRate, d.rateRead = minRate, 0
	d.rateFrom = d.readSet + int64(grace)
	d.rateBound = d.rateFrom < d.readSet+int64(t)
	if d.rateBound {
		d.setRead(time.Unix(0, d.rateFrom))
	}
}

// rateDeadline is the latest a read may end under the minimum rate.
func (d *DeadlineConn) rateDeadline() int64 {
	// A second per minRate bytes, without overflowing for huge bodies: past
	// what int64 nanoseconds hold, the rate sets no bound.
	sec, rem := d.rateRead/d.minRate, d.rateRead%d.minRate
	if sec >= (math.MaxInt64-d.rateFrom)/int64(time.Second)-1 {
		return math.MaxInt64
	}
	return d.rateFrom + sec*int64(time.Second) + rem*int64(time.Second)/d.minRate
}

// SetReadLimit makes every read until the next SetReadTimeout end by t from
// now, however the bytes trickle in. The socket gets the deadline with the
// next read (in lazy mode, the next read that waits): a head already
// buffered above the socket costs no deadline update.
func (d *DeadlineConn) SetReadLimit(t time.Duration) { d.SetReadLimitFrom(time.Now(), t) }

// SetReadLimitFrom is SetReadLimit counting t from a time the caller has
// just read from the clock (the start of a request), saving a clock read.
func (d *DeadlineConn) SetReadLimitFrom(from time.Time, t time.Duration) {
	d.readFixed, d.minRate, d.rateBound = true, 0, false
	d.readAt, d.slack, d.armed = from.Add(t).UnixNano(), int64(t/8), false
}

func (d *DeadlineConn) Read(p []byte) (int, error) {
	if len(d.prefix) > 0 {
		n := copy(p, d.prefix)
		d.prefix = d.prefix[n:]
		return n, nil
	}
	if d.lazy && d.minRate == 0 {
		return d.readLazy(p)
	}
	if d.readFixed {
		if !d.armed {
			d.armFixed(false)
		}
	} else {
		if now := time.Now(); now.UnixNano()-d.readSet > int64(d.readTimeout/8) || d.rateBound {
			d.readSet = now.UnixNano()
			dl := now.Add(d.readTimeout)
			if d.minRate > 0 {
				r := d.rateDeadline()
				if d.rateBound = r < dl.UnixNano(); d.rateBound {
					dl = time.Unix(0, r)
				}
			}
			d.setRead(dl)
		}
	}
	var n int
	var err error
	if d.Raw.Use() {
		n, err = d.Raw.read(p)
	} else {
		n, err = d.Conn.Read(p)
	}
	if d.minRate > 0 {
		d.rateRead += int64(n)
	}
	return n, err
}

// readLazy is Read in lazy mode: one read that does not wait, then, only
// if nothing was there, the deadline and a read that waits.
func (d *DeadlineConn) readLazy(p []byte) (int, error) {
	try := d.tryNext
	d.tryNext = false
	if !d.Raw.sending() { // with bytes to send first, the answer cannot be there yet
		for stale := false; ; stale = true {
			n, err := d.Raw.tryRead(p)
			switch {
			case err == ErrWouldBlock && try:
				return 0, err
			case err == ErrWouldBlock:
			case isDeadline(err) && !stale:
				d.armRead(true) // a deadline set before ended the read before it began
				continue
			default:
				d.full = n == len(p)
				return n, err
			}
			break
		}
	}
	d.armRead(false)
	n, err := d.Raw.read(p)
	d.full = n == len(p)
	return n, err
}

// armRead sets the read deadline a wait owes: the fixed one if not set
// yet, the sliding one if due; force sets it whatever was set before.
func (d *DeadlineConn) armRead(force bool) {
	if d.readFixed {
		if force || !d.armed {
			d.armFixed(force)
		}
		return
	}
	if now := time.Now(); force || now.UnixNano()-d.readSet > int64(d.readTimeout/8) {
		d.readSet = now.UnixNano()
		d.setRead(now.Add(d.readTimeout))
	}
}

// armFixed puts the fixed read deadline on the socket. A deadline d set
// there before that ends at most an eighth of the limit earlier is kept
// (unless force): reading one request after another, a connection's hot
// window then moves once every few milliseconds, not before every wait.
func (d *DeadlineConn) armFixed(force bool) {
	d.armed = true
	if !force && d.onSock != 0 && d.onSock <= d.readAt && d.readAt-d.onSock <= d.slack {
		return
	}
	d.setRead(time.Unix(0, d.readAt))
}

// setRead sets the socket's read deadline to t and remembers it.
func (d *DeadlineConn) setRead(t time.Time) {
	d.onSock = t.UnixNano()
	d.Conn.SetReadDeadline(t)
}

// isDeadline reports the timeout of a read or write a passed deadline ended.
func isDeadline(err error) bool {
	oe, ok := err.(*net.OpError)
	return ok && oe.Timeout()
}

func (d *DeadlineConn) Write(p []byte) (int, error) {
	if d.lazy {
		return d.writeLazy(p)
	}
	if now := time.Now(); now.UnixNano()-d.writeSet > int64(d.writeTimeout/8) {
		d.writeSet = now.UnixNano()
		d.Conn.SetWriteDeadline(now.Add(d.writeTimeout))
	}
	if d.Raw.Use() {
		return d.Raw.write(p)
	}
	return d.Conn.Write(p)
}

// writeLazy is Write in lazy mode: what fits goes out without a deadline;
// the rest waits under the sliding one.
func (d *DeadlineConn) writeLazy(p []byte) (int, error) {
	n, err := d.Raw.tryWrite(p)
	if err != ErrWouldBlock && !isDeadline(err) {
		return n, err
	}
	if now := time.Now(); err != ErrWouldBlock || now.UnixNano()-d.writeSet > int64(d.writeTimeout/8) {
		d.writeSet = now.UnixNano()
		d.Conn.SetWriteDeadline(now.Add(d.writeTimeout))
	}
	m, err := d.Raw.write(p[n:])
	return n + m, err
}

// SetPrefix makes the next reads return b before the conn's own bytes: a
// larger reader taking over what a smaller one held. b is not copied.
func (d *DeadlineConn) SetPrefix(b []byte) { d.prefix = b }

// RearmRead makes the next read set its sliding deadline again, whatever
// deadline someone else set on the conn meanwhile.
func (d *DeadlineConn) RearmRead() { d.readSet, d.armed, d.onSock = 0, false, 0 }

// ReadDeadlineOn returns the read deadline d last set on its conn (unix
// nanoseconds), 0 when unknown. A conn that outlives d (a pooled node
// connection) keeps it for the next DeadlineConn: see KnownReadDeadline.
func (d *DeadlineConn) ReadDeadlineOn() int64 { return d.onSock }

// KnownReadDeadline tells d, just after Reset, the read deadline already
// on its conn (ReadDeadlineOn of the DeadlineConn that last used it; 0:
// unknown), so a fixed limit may keep it as if d had set it. Only what a
// DeadlineConn set and nobody changed since may be passed.
func (d *DeadlineConn) KnownReadDeadline(ns int64) { d.onSock = ns }
