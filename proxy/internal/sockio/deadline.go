package sockio

import (
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
// hold it open either.
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
}

// Reset points d at c. rc is c's RawConn for raw reads and writes
// (RawConnOf, kept per socket), or nil.
func (d *DeadlineConn) Reset(c net.Conn, rc syscall.RawConn, read, write time.Duration) {
	d.Conn, d.readTimeout, d.writeTimeout, d.readSet, d.writeSet, d.readFixed, d.prefix = c, read, write, 0, 0, false, nil
	d.minRate, d.rateBound = 0, false
	d.Raw.Set(c, rc)
}

// SetReadTimeout makes reads slide a deadline of t, starting now.
func (d *DeadlineConn) SetReadTimeout(t time.Duration) {
	d.readTimeout, d.readFixed, d.minRate, d.rateBound = t, false, 0, false
	now := time.Now()
	d.readSet = now.UnixNano()
	d.Conn.SetReadDeadline(now.Add(t))
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
	d.minRate, d.rateRead = minRate, 0
	d.rateFrom = d.readSet + int64(grace)
	d.rateBound = d.rateFrom < d.readSet+int64(t)
	if d.rateBound {
		d.Conn.SetReadDeadline(time.Unix(0, d.rateFrom))
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
// now, however the bytes trickle in.
func (d *DeadlineConn) SetReadLimit(t time.Duration) {
	d.readFixed, d.minRate, d.rateBound = true, 0, false
	d.Conn.SetReadDeadline(time.Now().Add(t))
}

func (d *DeadlineConn) Read(p []byte) (int, error) {
	if len(d.prefix) > 0 {
		n := copy(p, d.prefix)
		d.prefix = d.prefix[n:]
		return n, nil
	}
	if !d.readFixed {
		if now := time.Now(); now.UnixNano()-d.readSet > int64(d.readTimeout/8) || d.rateBound {
			d.readSet = now.UnixNano()
			dl := now.Add(d.readTimeout)
			if d.minRate > 0 {
				r := d.rateDeadline()
				if d.rateBound = r < dl.UnixNano(); d.rateBound {
					dl = time.Unix(0, r)
				}
			}
			d.Conn.SetReadDeadline(dl)
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

func (d *DeadlineConn) Write(p []byte) (int, error) {
	if now := time.Now(); now.UnixNano()-d.writeSet > int64(d.writeTimeout/8) {
		d.writeSet = now.UnixNano()
		d.Conn.SetWriteDeadline(now.Add(d.writeTimeout))
	}
	if d.Raw.Use() {
		return d.Raw.write(p)
	}
	return d.Conn.Write(p)
}

// SetPrefix makes the next reads return b before the conn's own bytes: a
// larger reader taking over what a smaller one held. b is not copied.
func (d *DeadlineConn) SetPrefix(b []byte) { d.prefix = b }

// RearmRead makes the next read set its sliding deadline again, whatever
// deadline someone else set on the conn meanwhile.
func (d *DeadlineConn) RearmRead() { d.readSet = 0 }
