//go:build linux

package splice

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/sockio"
	"github.com/tether-lb/tether/proxy/internal/wire"
	"golang.org/x/sys/unix"
)

// Directions of a loop session. A direction reads the side with its own
// index and writes to the other: the client side is 0, the node side 1.
const (
	dirUp   = 0 // client→node
	dirDown = 1 // node→client

	sideClient = 0
	sideNode   = 1
)

// Phases of a session's node→client direction.
const (
	phaseRun    uint8 = iota // copying
	phaseFinish              // evicted mid-frame: the frame in flight passes, nothing after it
	phaseTell                // the node side is closed; the Close frame goes once pending bytes are out
	phaseSent                // the Close frame is written (perhaps pending); then the client is half-closed
	phaseLinger              // client half-closed: waiting closeLinger for it to hang up
)

// lsess flags.
const (
	flagWS     uint8 = 1 << iota // Session.WebSocket
	flagAdded                    // in its loop's table
	flagEnded                    // done was called
	flagQueued                   // in its loop's ready list
)

// lsess is one session on a loop: 160 bytes on amd64, all an idle session
// holds besides its two descriptors. After Start only its loop's goroutine
// touches it, except evict (atomic), the immutable l, and Registered's slot
// (under its node's lock, by whichever goroutine registers or unregisters a
// session of that node).
type lsess struct {
	pool.Registered
	evict    atomic.Uint32
	l        *loop
	done     Ender
	registry Registry
	track    wire.FrameTracker // node→client frame boundaries, with flagWS
	dirs     [2]ldir           // dirUp, dirDown
	last     int64             // loop clock when a byte last moved either way
	until    int64             // loop clock ending phaseFinish (grace) or phaseLinger
	idle, wt time.Duration
	fds      [2]int32 // client, node descriptors; -1 once closed
	slot     int32    // index in l.sessions
	gen      uint32   // the slot's use count, in its epoll events: a stale event misses
	told     uint16   // Close code tether wrote to the client; 0 = none
	phase    uint8
	flags    uint8
	st       [2]uint8 // per direction: dirReadable, dirHup, dirDone
}

// ldir is one direction of an lsess.
type ldir struct {
	n    int64    // bytes written to the destination
	pend *pendBuf // bytes read but not yet written; nil when none
}

// Direction states, in lsess.st.
const (
	dirReadable uint8 = 1 << iota // epoll said readable and no short read since (edge-triggered)
	dirHup                        // the source's peer hung up or errored: read until a read says so
	dirDone                       // this direction has ended
)

// pendBuf is a loop's read buffer; when a peer does not take all of a read,
// the session keeps the buffer with the remainder at b[off:end] and the
// loop takes another from the pool.
type pendBuf struct {
	b        []byte
	since    int64 // loop clock when the remainder was made or last moved
	off, end int32
}

var _ pool.Evictor = (*lsess)(nil)

// Evict implements pool.Evictor: the loop writes a Close frame with code at
// the next frame boundary, closes the node side and half-closes the client
// (a plain session is closed). It queues a command and returns; later calls
// do nothing.
func (s *lsess) Evict(code uint16) {
	if code != 0 && s.evict.CompareAndSwap(0, uint32(code)) {
		s.l.post(loopCmd{op: cmdEvict, s: s})
	}
}

// sweepEvery is how often s needs the sweep, in loop-clock nanoseconds.
func (s *lsess) sweepEvery() int64 {
	t := maxSweep
	for _, d := range [2]time.Duration{s.idle, s.wt} {
		if d > 0 {
			t = min(t, max(d/4, minSweep))
		}
	}
	return int64(t)
}

// pump moves direction d as far as it goes now: the pending remainder first,
// then the Close frame steps of a told client, then reads, for one turn.
func (l *loop) pump(s *lsess, d int) {
	h := &s.dirs[d]
	for turn := 0; ; turn++ {
		if s.flags&flagEnded != 0 || s.st[d]&dirDone != 0 {
			return
		}
		if h.pend != nil && !l.flush(s, d) {
			return
		}
		if d == dirDown && s.phase >= phaseTell {
			if !l.closeClient(s) {
				return
			}
			continue
		}
		if s.st[d]&dirReadable == 0 {
			return
		}
		if turn == pumpTurn {
			l.queue(s)
			return
		}
		if !l.move(s, d) {
			return
		}
	}
}

// move makes one read for direction d and writes what came. It reports
// whether pump should go on.
func (l *loop) move(s *lsess, d int) bool {
	p := l.buf.b
	if d == dirDown && s.phase == phaseFinish {
		p = p[:min(s.track.UntilBoundary(), uint64(len(p)))] // not past the frame in flight
	}
	n, err := sockio.ReadFD(s.fds[d], p)
	switch {
	case err == unix.EAGAIN:
		s.st[d] &^= dirReadable
		return false
	case err != nil:
		l.readErr(s, d, err)
		return true
	case n == 0:
		l.eof(s, d)
		return true
	}
	if n < len(p) && s.st[d]&dirHup == 0 {
		// The socket is drained: with edge triggering, bytes arriving from
		// now on raise a new event, so no read has to see EAGAIN first.
		s.st[d] &^= dirReadable
	}
	if d == dirDown && s.flags&flagWS != 0 {
		s.track.Advance(p[:n])
	}
	if d == dirUp && s.told != 0 {
		return true // the node side is closed: the client's last bytes go nowhere
	}
	if !l.send(s, d, n) {
		return false
	}
	if s.phase == phaseFinish && d == dirDown && s.track.AtBoundary() {
		l.tell(s, uint16(s.evict.Load()))
	}
	return true
}

// send writes the first n bytes of the loop buffer for direction d. What the
// peer does not take now stays with the session (keep), and the direction
// waits for the peer to become writable. It reports whether all went.
func (l *loop) send(s *lsess, d int, n int) bool {
	h := &s.dirs[d]
	w, err := sockio.WriteFD(s.fds[1-d], l.buf.b[:n])
	if w > 0 {
		h.n += int64(w)
		s.last = l.now
	}
	if w == n {
		return true
	}
	if err != nil && err != unix.EAGAIN {
		l.end(s, os.NewSyscallError("write", err), d)
		return false
	}
	l.keep(h, w, n)
	return false
}

// keep hands the loop's buffer, holding a remainder at [off:end], to h and
// takes a fresh one from the pool: no copy, and a slow peer holds at most
// one buffer per direction.
func (l *loop) keep(h *ldir, off, end int) {
	p := l.buf
	p.off, p.end, p.since = int32(off), int32(end), l.now
	h.pend = p
	bufsOut.Add(1)
	l.buf = l.ls.bufs.Get().(*pendBuf)
}

// release gives h's pending buffer back.
func (l *loop) release(h *ldir) {
	l.ls.bufs.Put(h.pend)
	h.pend = nil
	bufsOut.Add(-1)
}

// flush writes h's pending bytes. It reports whether none are left.
func (l *loop) flush(s *lsess, d int) bool {
	h := &s.dirs[d]
	p := h.pend
	w, err := sockio.WriteFD(s.fds[1-d], p.b[p.off:p.end])
	if w > 0 {
		p.off += int32(w)
		h.n += int64(w)
		s.last, p.since = l.now, l.now
	}
	if p.off == p.end {
		l.release(h)
		return true
	}
	if err != nil && err != unix.EAGAIN {
		l.end(s, os.NewSyscallError("write", err), d)
	}
	return false
}

// eof handles end-of-stream on direction d's source: the peer's write side
// is shut down (half-close), and the session ends once both directions
// have. A WebSocket node stream that ends without a Close tells the client.
func (l *loop) eof(s *lsess, d int) {
	s.st[d] &^= dirReadable
	if ws := s.flags&flagWS != 0; d == dirDown && ws && (s.phase == phaseFinish || nodeDied(ws, &s.track, s.clientShut())) {
		l.nodeEnded(s)
		return
	}
	if fd := s.fds[1-d]; fd >= 0 {
		_ = unix.Shutdown(int(fd), unix.SHUT_WR) // ENOTCONN: the other direction reports it
	}
	s.st[d] |= dirDone
	if s.st[1-d]&dirDone != 0 {
		l.end(s, nil, d)
	}
}

// clientShut reports whether the client's stream ended (EOF) before the
// node's: the node's end then answers it, and is no node failure.
func (s *lsess) clientShut() bool { return s.st[dirUp]&dirDone != 0 }

// readErr handles a failed read on direction d's source.
func (l *loop) readErr(s *lsess, d int, err error) {
	if ws := s.flags&flagWS != 0; d == dirDown && ws && (s.phase == phaseFinish || err == unix.ECONNRESET && nodeDied(ws, &s.track, s.clientShut())) {
		l.nodeEnded(s)
		return
	}
	l.end(s, os.NewSyscallError("read", err), d)
}

// nodeEnded handles the end of a WebSocket node stream that brought no Close
// (the node died), or came during an eviction's grace: at a frame boundary
// the client is told 1012, or the code asked for; mid-frame no Close can be
// placed and the session ends with errMidFrame (not wrapping an EOF or a
// reset, which would read as a normal end).
func (l *loop) nodeEnded(s *lsess) {
	if s.phase != phaseFinish {
		l.countEviction(s) // the node died; an eviction's grace counted in evict
	}
	if !s.track.AtBoundary() {
		l.end(s, errMidFrame, dirDown)
		return
	}
	code := pool.CloseServiceRestart
	if s.phase == phaseFinish {
		code = uint16(s.evict.Load())
	}
	l.tell(s, code)
}

// evict runs an Evict command on the loop.
func (l *loop) evict(s *lsess) {
	if h := testHookEvicted; h != nil {
		defer h(s)
	}
	if s.flags&(flagAdded|flagEnded) != flagAdded || s.phase != phaseRun || s.st[dirDown]&dirDone != 0 {
		return // not added yet (add comes back here), over, or already told
	}
	if s.evict.Load() == uint32(pool.CloseServiceRestart) {
		l.countEviction(s) // still running: the node's end did not tell it first
	}
	if s.flags&flagWS == 0 {
		l.end(s, errEvicting, dirDown)
		return
	}
	if s.track.AtBoundary() {
		l.tell(s, uint16(s.evict.Load()))
		l.pump(s, dirDown)
		return
	}
	s.phase = phaseFinish
	s.until = l.now + int64(evictGrace)
	l.wakeBy(s.until)
	l.pump(s, dirDown)
}

// countEviction counts s as ended because its node failed, once: evict
// counts a 1012 eviction of a session still in phaseRun, nodeEnded a node
// stream that ended outside an eviction's grace (phaseFinish comes from an
// evict that counted). Either moves the session out of phaseRun (or ends
// it), so the other does not count it again.
func (l *loop) countEviction(s *lsess) {
	if s.registry != nil {
		s.registry.CountEviction()
	}
}

// tell starts ending the client's side with a Close frame with code: the
// node side closes now (what the client still sends is read and dropped),
// the frame goes out after the bytes pending toward the client.
func (l *loop) tell(s *lsess, code uint16) {
	s.told = code
	s.phase = phaseTell
	l.closeFD(s, sideNode)
	if h := &s.dirs[dirUp]; h.pend != nil {
		l.release(h)
	}
}

// closeClient runs the told steps once nothing is pending toward the
// client: write the Close frame, then half-close the client and linger. It
// reports whether pump should go on.
func (l *loop) closeClient(s *lsess) bool {
	if s.phase == phaseTell {
		s.phase = phaseSent
		return l.send(s, dirDown, copy(l.buf.b, wire.CloseFrameFor(s.told)))
	}
	// phaseSent, all written.
	_ = unix.Shutdown(int(s.fds[sideClient]), unix.SHUT_WR)
	s.phase = phaseLinger
	s.st[dirDown] |= dirDone
	s.until = l.now + int64(closeLinger)
	l.wakeBy(s.until)
	if s.st[dirUp]&dirDone != 0 {
		l.end(s, nil, dirDown)
	}
	return false
}

// check ends s if one of its clocks ran out.
func (l *loop) check(s *lsess) {
	now := l.now
	for d := range s.dirs {
		if p := s.dirs[d].pend; p != nil && now-p.since >= int64(s.wt) {
			l.end(s, fmt.Errorf("write: %w", os.ErrDeadlineExceeded), d)
			return
		}
	}
	switch s.phase {
	case phaseRun:
		if s.idle > 0 && s.dirs[dirUp].pend == nil && s.dirs[dirDown].pend == nil && now-s.last >= int64(s.idle) {
			l.end(s, errSpliceIdle, dirDown)
		}
	case phaseFinish, phaseLinger:
		if now < s.until {
			l.wakeBy(s.until)
		} else if s.phase == phaseFinish {
			l.end(s, fmt.Errorf("%w: %w", errMidFrame, os.ErrDeadlineExceeded), dirDown)
		} else {
			l.end(s, nil, dirUp) // the client did not hang up: the result is the toldError
		}
	}
}

// closeFD closes s's descriptor on side (0 client, 1 node); closing it also
// takes it out of epoll (tether holds the only reference).
func (l *loop) closeFD(s *lsess, side int) {
	if fd := s.fds[side]; fd >= 0 {
		unix.Close(int(fd))
		s.fds[side] = -1
	}
}

// end ends s: both descriptors closed, buffers back, out of the table and
// the Registry, done called. err is why (nil for a normal end) and d the
// direction it came from. Only the loop's goroutine calls end on an added
// session; Start calls it on one that never was.
func (l *loop) end(s *lsess, err error, d int) {
	if s.flags&flagEnded != 0 {
		return
	}
	s.flags |= flagEnded
	l.closeFD(s, sideClient)
	l.closeFD(s, sideNode)
	for i := range s.dirs {
		if s.dirs[i].pend != nil {
			l.release(&s.dirs[i])
		}
	}
	if s.flags&flagAdded != 0 {
		l.sessions[s.slot] = nil
		l.free = append(l.free, s.slot)
	}
	if s.registry != nil {
		s.registry.Unregister(s)
	}
	s.done.SessionEnded(s.dirs[dirUp].n, s.dirs[dirDown].n, l.ls.result(s, err, d))
}

// result is the session's error for done: the rules of result, with err
// from direction d.
func (ls *Loops) result(s *lsess, err error, d int) error {
	var up, down error
	if d == dirDown {
		down = err
	} else {
		up = err
	}
	return result(ls.log, s.told, up, down, s.dirs[dirUp].n, s.dirs[dirDown].n)
}
