package keepalive

import (
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// Conn is a client connection as the loops see it. The loops call its
// methods from their own goroutine and from workers, one owner at a time,
// as its Place's state says.
type Conn interface {
	// Place is the connection's place on the loops, kept in the
	// connection itself.
	Place() *Place
	// Socket returns the connection's socket: its bare descriptor while
	// it is cold (rc nil), else its net.Conn's RawConn.
	Socket() (fd int, rc syscall.RawConn)
	// Serve runs on a worker once the connection is readable (busy): it
	// serves what arrived and ends with Park, or by closing the connection.
	Serve()
	// Close ends the connection: its loop closed it (idle past its time,
	// a drain, a stop). Close must call Forget.
	Close()
	// Lost ends a connection the loops could not keep (an epoll or
	// descriptor error): it logs err and closes.
	Lost(err error)
	// Refused is called, busy and out of every loop, when no loop could
	// take the connection (err): it goes on with a goroutine of its own.
	Refused(err error)
	// Cool lets go of the net.Conn of a warm connection, busy and out of
	// every epoll, keeping its descriptor; it may stay warm (no descriptor
	// for the duplicate).
	Cool()
	// Sweep tells the sweep what to do with the connection, idle since
	// since (unix nanoseconds) at now: close it (expired), or cool it.
	// While draining, expired means the drain may close it.
	Sweep(now, since int64, draining bool) (expired, cool bool)
	// ReadableNow reports bytes or a hang-up waiting on the socket.
	ReadableNow() bool
}

// Options configure the loops.
type Options struct {
	// Loops is the number of loops (<= 0: one per CPU).
	Loops int
	// Tick is how often a loop sweeps its idle connections (while draining
	// or not); the loops keep it within 10 ms and a second.
	Tick func(draining bool) time.Duration
	// Log receives a loop's own failure, after which it closes the
	// connections it holds.
	Log *zerolog.Logger
}

// Ownership states of a connection on the loops.
const (
	busy  int32 = iota // a goroutine serves it (the zero value: not on a loop yet)
	ready              // busy, and the loop saw it readable meanwhile
	idle               // the loop holds it, waiting for readiness
	gone               // the loop closed it (idle timeout, drain, stop)
)

// Place is a connection's place on the loops: which loop and slot hold it,
// who owns it, and when it last went idle. The caller keeps one in each
// connection and touches it only through the loops and these methods.
//
// A connection is owned by one side at a time, as its state says. The
// loop owns an idle one: its descriptor sits in the loop's epoll,
// edge-triggered, and nothing else of it runs. When epoll reports it
// readable the loop makes it busy and hands it to a worker, which serves
// it (Conn.Serve) and gives it back (Park). Readiness that comes while it
// is served (a pipelined request, a hang-up) marks it ready, and Park then
// has it served again instead of parking: an edge-triggered event is
// reported once.
type Place struct {
	l     *loop // nil until its first park (and after Remove); set by its owner
	slot  int32 // index in l.conns
	gen   uint32
	state atomic.Int32
	since atomic.Int64 // unix nanoseconds it last went idle; read by the sweep only while idle
}

// Idle reports whether a loop holds the connection, waiting for readiness.
func (p *Place) Idle() bool { return p.state.Load() == idle }

// Forget frees the connection's slot on its loop, if it has one: its socket
// is closed. Conn.Close calls it.
func (p *Place) Forget(c Conn) {
	if l := p.l; l != nil {
		l.forget(c)
	}
}
