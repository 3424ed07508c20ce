//go:build linux

package splice

// The event-loop Engine: this file has the engine and its loops (start,
// commands, events, sweep); loopsession_linux.go has a session on a loop and
// its state machine; loop_other.go stands in off Linux.

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/proxy/internal/sockio"
	"golang.org/x/sys/unix"
)

// Loops is the event-loop Engine (issue 7): after the 101, a session
// whose two conns are both *net.TCPConn leaves Go's poller and is run by one
// of a fixed set of epoll loops, each one goroutine ((*loop).run). An idle
// session then holds no goroutine, no buffer and no pipe: its two
// descriptors and one small struct in its loop's table. Sessions with another
// side (a *tls.Conn needs its reader) go to the goroutine Engine.
//
// Per session the loops keep the goroutine Engine's behaviour: prefixes
// first, half-close on end-of-stream, exact byte counts, IdleTimeout and
// WriteTimeout (checked by a sweep per loop, not a timer per session), the
// node→client frame tracker, and Close 1012/1001 written at a frame boundary
// when the session is evicted (an eventfd command to its loop, no goroutine
// per session) or when the node's stream ends without a Close.
//
// On other systems than Linux NewLoops fails with errors.ErrUnsupported
// and the goroutine Engine is the one to use.
type Loops struct {
	loops    []*loop       // fixed by NewLoops
	next     atomic.Uint32 // round robin over loops
	fallback Engine        // the goroutine Engine, for sessions not on two TCP conns
	bufs     sync.Pool     // of *pendBuf, each of len size: loop read buffers and pending remainders
	size     int
	log      zerolog.Logger
	wg       sync.WaitGroup // one per loop goroutine
	once     sync.Once      // guards the stop in Close
}

var _ Engine = (*Loops)(nil)

// NewLoops starts loops epoll loops (<= 0: defaultLoops) and returns the Engine that runs plain-TCP sessions on them.
// bufSize is the most one read moves (<= 0: 64 KiB): each loop holds one
// such buffer, and a session holds one more per direction only while a peer
// is slow to read. log gets at most one Debug line per session. Close stops
// the loops. The Engine is safe for concurrent use.
func NewLoops(loops, bufSize int, log zerolog.Logger) (*Loops, error) {
	if loops <= 0 {
		loops = defaultLoops()
	}
	if bufSize <= 0 {
		bufSize = defaultSpliceBuf
	}
	ls := &Loops{size: bufSize, log: log, fallback: NewGo(bufSize, log)}
	ls.bufs.New = ls.newBuf
	for range loops {
		l, err := newLoop(ls)
		if err != nil {
			ls.stopLoops()
			return nil, err
		}
		ls.loops = append(ls.loops, l)
		ls.wg.Go(l.run)
	}
	return ls, nil
}

// Start implements Engine. A session with two *net.TCPConn goes to a loop:
// Start writes the prefixes (ClientBuf, NodeBuf) on the caller's goroutine,
// calls Release, takes the descriptors out of the conns (closing the conns),
// registers the session with its Registry and hands it to a loop, which calls
// done once, from the loop's goroutine. Any other session goes to the
// goroutine Engine. done must return quickly: it runs on a loop that serves
// thousands of sessions.
func (ls *Loops) Start(sess *Session, done Ender) {
	client, cok := sess.Client.(*net.TCPConn)
	node, nok := sess.Node.(*net.TCPConn)
	if !cok || !nok || len(ls.loops) == 0 {
		ls.fallback.Start(sess, done)
		return
	}
	ls.startLoop(client, node, sess, done)
}

// defaultLoops is one loop per usable CPU (GOMAXPROCS). The loops' reads
// and writes are raw system calls (sockio.ReadFD), so a loop's thread keeps
// its P and a loop woken while the other runs costs no hand-off between
// threads: more loops than one then add throughput (BENCHMARKS.md, "Splice
// engines side by side").
func defaultLoops() int {
	return max(1, runtime.GOMAXPROCS(0))
}

// Close stops the loops: each ends its sessions (done gets errLoopClosed, or
// the toldError of a session already told) and its goroutine returns. Close
// waits for that; later calls do nothing. Sessions on the goroutine Engine
// are not touched: closing their conns ends them. Starting a loop session
// after Close ends it at once with errLoopClosed. Frozen sessions (Freeze)
// are not touched: Thaw ends them with errLoopClosed, Release lets them go.
// A nil *Loops may be closed (it does nothing).
func (ls *Loops) Close() {
	if ls != nil {
		ls.once.Do(ls.stopLoops)
	}
}

func (ls *Loops) newBuf() any {
	return &pendBuf{b: make([]byte, ls.size)}
}

// startLoop is Start for two TCP conns.
func (ls *Loops) startLoop(client, node *net.TCPConn, sess *Session, done Ender) {
	s := &lsess{done: done, registry: sess.Registry, idle: sess.IdleTimeout, wt: sess.WriteTimeout, fds: [2]int32{-1, -1}}
	if s.wt <= 0 {
		s.wt = defaultSpliceWriteTimeout
	}
	if sess.WebSocket {
		s.flags |= flagWS
	}
	d, err := s.prefixes(client, node, sess)
	if sess.Release != nil {
		sess.Release()
	}
	if err != nil {
		client.Close()
		node.Close()
		done.SessionEnded(s.dirs[dirUp].n, s.dirs[dirDown].n, ls.result(s, err, d))
		return
	}
	if err := s.detach(client, node); err != nil {
		ls.log.Warn().Err(err).Msg("splice loop: descriptors not taken; the session runs on goroutines")
		up, down := s.dirs[dirUp].n, s.dirs[dirDown].n
		ls.fallback.Start(&Session{
			Client: client, Node: node, IdleTimeout: s.idle, WriteTimeout: s.wt,
			WebSocket: sess.WebSocket, Registry: sess.Registry,
		}, EndFunc(func(toNode, toClient int64, err error) { done.SessionEnded(up+toNode, down+toClient, err) }))
		return
	}
	sess.Detached = true
	s.l = ls.loops[(ls.next.Add(1)-1)%uint32(len(ls.loops))]
	if s.registry != nil {
		s.registry.Register(s) // may call Evict: that command runs before the add, see evict
	}
	if !s.l.post(loopCmd{op: cmdAdd, s: s}) {
		s.l.end(s, errLoopClosed, dirDown)
	}
}

// prefixes writes ClientBuf to the node and NodeBuf to the client, through
// the Go conns under the write timeout, and reports the direction of an
// error. The frame tracker sees NodeBuf: it may end inside a frame.
func (s *lsess) prefixes(client, node *net.TCPConn, sess *Session) (int, error) {
	for d, p := range [2][]byte{sess.ClientBuf, sess.NodeBuf} {
		if len(p) == 0 {
			continue
		}
		dst := node
		if d == dirDown {
			dst = client
			if s.flags&flagWS != 0 {
				s.track.Advance(p)
			}
		}
		if err := dst.SetWriteDeadline(time.Now().Add(s.wt)); err != nil {
			return d, err
		}
		n, err := dst.Write(p)
		s.dirs[d].n += int64(n)
		if err != nil {
			return d, err
		}
	}
	return 0, nil
}

// detach takes the descriptors out of Go's poller: each socket is dup'ed
// (the copy shares the open file description, so it stays non-blocking),
// then the conn is closed, which removes the original from the runtime's
// epoll and closes it; the socket lives on in the copy. On an error both
// conns are left as they were.
func (s *lsess) detach(client, node *net.TCPConn) error {
	cfd, err := sockio.DupFD(client)
	if err != nil {
		return err
	}
	nfd, err := sockio.DupFD(node)
	if err != nil {
		unix.Close(cfd)
		return err
	}
	client.Close()
	node.Close()
	s.fds = [2]int32{int32(cfd), int32(nfd)}
	return nil
}

// stopLoops asks every loop to stop and waits for their goroutines.
func (ls *Loops) stopLoops() {
	for _, l := range ls.loops {
		l.post(loopCmd{op: cmdStop})
	}
	ls.wg.Wait()
}

const (
	// pumpTurn is how many reads one direction makes before the other
	// sessions of its loop get their turn: one busy session cannot hold
	// its loop for more than pumpTurn buffers.
	pumpTurn = 16
	// The sweep (timeouts) runs every quarter of the shortest timeout of a
	// loop's sessions, within these bounds.
	minSweep = 10 * time.Millisecond
	maxSweep = time.Second
	// minArm is the earliest a loop's timer is set from now.
	minArm = time.Millisecond
	// wakeSlot marks the eventfd's epoll events; session slots are >= 0.
	wakeSlot = -1
)

// Commands other goroutines queue for a loop.
const (
	cmdAdd = iota + 1
	cmdEvict
	cmdStop
	cmdFreeze // Freeze: fz gets the sessions taken off
	cmdThaw   // Thaw: f goes (back) on the loop
)

type loopCmd struct {
	op int
	s  *lsess
	f  *Frozen
	fz *freezing
}

// loop is one epoll instance, the goroutine that waits on it and the
// sessions registered with it.
//
// The goroutine does not block in epoll_wait: an epoll descriptor is itself
// pollable, so it sits in Go's poller (epfile) and the goroutine parks there
// like any network goroutine, calling epoll_wait with a zero timeout when
// woken. A goroutine blocked in a system call instead costs a thread
// hand-off per wake-up (BENCHMARKS.md: "Tried and dropped").
// Timeouts are epfile's read deadline.
type loop struct {
	ls     *Loops
	epfd   int
	epfile *os.File        // epfd in Go's poller; owns and closes epfd
	rc     syscall.RawConn // epfile's
	evfd   int             // eventfd: post wakes the loop with it

	mu      sync.Mutex // guards cmds, stopped, and evfd's closing
	cmds    []loopCmd
	stopped bool // no more commands: the loop is ending or has ended

	// Only run touches the fields below.
	events    []unix.EpollEvent
	perr      error              // what ended turn: epoll_wait's or arm's error
	stop      bool               // turn ran a stop command
	polls     atomic.Uint64      // epoll_wait calls, for the benchmarks' polls/op
	turnFn    func(uintptr) bool // turn, bound once: passing it allocates nothing
	deadline  int64              // loop clock of epfile's read deadline
	spare     []loopCmd
	sessions  []*lsess // by slot; nil = free
	free      []int32  // free slots
	gen       uint32
	buf       *pendBuf // the read buffer; a slow peer's session may take it, see keep
	ready     []*lsess // sessions that used their turn with bytes still to read
	later     []*lsess // ready's spare
	base      time.Time
	now       int64 // loop clock: nanoseconds since base, read once per turn
	tick      int64 // sweep period
	nextSweep int64
	wakeAt    int64 // earliest grace or linger end; 0 = none
}

func newLoop(ls *Loops) (*loop, error) {
	ep, err := sockio.NewEpoll("splice-epoll", wakeSlot)
	if err != nil {
		return nil, err
	}
	l := &loop{ls: ls, epfd: ep.FD, evfd: ep.Wake, epfile: ep.File, rc: ep.RC, base: time.Now(), tick: int64(maxSweep)}
	l.events = make([]unix.EpollEvent, 256)
	l.turnFn = l.turn
	l.buf = ls.bufs.Get().(*pendBuf)
	l.nextSweep = l.tick
	return l, nil
}

// wakeBytes is what post writes to the eventfd.
var wakeBytes = [8]byte{1}

// post queues c for the loop and wakes it if the queue was empty. It reports
// false once the loop is stopping: c will not run.
func (l *loop) post(c loopCmd) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return false
	}
	l.cmds = append(l.cmds, c)
	if c.op == cmdStop {
		l.stopped = true
	}
	if len(l.cmds) == 1 {
		// Under mu: the loop closes evfd under mu once stopped is set.
		_, _ = unix.Write(l.evfd, wakeBytes[:])
	}
	return true
}

func (l *loop) clock() int64 { return int64(time.Since(l.base)) }

// run is the loop's goroutine. It lives inside one RawConn.Read of epfile
// (turn), so Go's poller keeps epfile's readiness between wake-ups: a
// wake-up costs one epoll_wait, not a second one before parking. Read
// returns for a stop, an error, or the read deadline (a sweep is due). An
// event handled in the turn whose arrival also readied epfile costs one
// more, empty, epoll_wait at the next park.
func (l *loop) run() {
	for {
		err := l.rc.Read(l.turnFn)
		if l.stop {
			l.shutdown(errLoopClosed)
			return
		}
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			err = l.perr
		}
		if err == nil {
			l.now = l.clock()
			l.timers()
			l.deadline = -1 // it passed: set it again even if unchanged
			err = l.arm()
		}
		if err != nil {
			l.ls.log.Error().Err(err).Msg("splice loop: waiting for events or setting its timer failed; its sessions end")
			l.shutdown(err)
			return
		}
	}
}

// turn handles what epfd has, again while sessions are still ready or
// events may be left, then returns false: Read parks the goroutine in Go's
// poller until epfd is readable or the read deadline passes, and calls turn
// again. It returns true (ending Read) only for a stop or an error.
func (l *loop) turn(fd uintptr) bool {
	for {
		n, err := sockio.EpollNow(int(fd), l.events)
		l.polls.Add(1)
		if err != nil && err != unix.EINTR {
			l.perr = os.NewSyscallError("epoll_wait", err)
			return true
		}
		l.now = l.clock()
		woken := false
		for i := range n {
			ev := &l.events[i]
			if ev.Fd == wakeSlot {
				woken = true
				continue
			}
			l.event(ev)
		}
		l.runReady()
		if woken && l.commands() {
			l.stop = true
			return true
		}
		l.timers()
		if len(l.ready) > 0 || n == len(l.events) || err != nil {
			continue
		}
		if l.perr = l.arm(); l.perr != nil {
			return true
		}
		return false
	}
}

// timers runs the sweep when it or a grace or linger end is due.
func (l *loop) timers() {
	if l.now >= l.nextSweep || (l.wakeAt != 0 && l.now >= l.wakeAt) {
		l.sweep()
	}
}

// arm sets epfile's read deadline to the next sweep or grace or linger
// end; it changes when those do, not per wake-up. A target already due
// (a sweep that took longer than its period) is set minArm from now: a
// deadline in the past would end every Read before turn could run, and
// the loop would sweep without ever handling events or commands.
func (l *loop) arm() error {
	at := l.nextSweep
	if l.wakeAt != 0 {
		at = min(at, l.wakeAt)
	}
	if at == l.deadline {
		return nil
	}
	l.deadline = at
	return l.epfile.SetReadDeadline(l.base.Add(time.Duration(max(at, l.clock()+int64(minArm)))))
}

// commands runs what other goroutines queued. It reports a stop.
func (l *loop) commands() (stop bool) {
	var b [8]byte
	_, _ = unix.Read(l.evfd, b[:]) // before taking the queue: a later post wakes again
	l.mu.Lock()
	cmds := l.cmds
	l.cmds = l.spare[:0]
	l.mu.Unlock()
	for i, c := range cmds {
		switch c.op {
		case cmdAdd:
			l.add(c.s)
		case cmdEvict:
			l.evict(c.s)
		case cmdStop:
			stop = true
		case cmdFreeze:
			l.freeze(c.fz)
		case cmdThaw:
			l.thaw(c.f)
		}
		cmds[i] = loopCmd{}
	}
	l.spare = cmds[:0]
	return stop
}

// shutdown ends every session with err (and those still queued to be
// added), then closes the loop's descriptors.
func (l *loop) shutdown(err error) {
	for _, s := range l.sessions {
		if s != nil {
			l.end(s, err, dirDown)
		}
	}
	l.mu.Lock()
	l.stopped = true
	cmds := l.cmds
	l.cmds = nil
	unix.Close(l.evfd)
	l.epfile.Close()
	l.mu.Unlock()
	for _, c := range cmds {
		switch c.op {
		case cmdAdd, cmdThaw:
			l.end(c.s, err, dirDown)
		case cmdFreeze:
			close(c.fz.done) // nothing frozen: the sessions ended above
		}
	}
	l.ls.bufs.Put(l.buf)
}

// add puts s in the table and both its descriptors in epoll, edge-triggered
// for reading and writing: readiness is then tracked in ldir and never
// changes epoll's interest, so flow control costs no epoll_ctl.
func (l *loop) add(s *lsess) {
	if k := len(l.free); k > 0 {
		s.slot = l.free[k-1]
		l.free = l.free[:k-1]
	} else {
		s.slot = int32(len(l.sessions))
		l.sessions = append(l.sessions, nil)
	}
	l.gen++
	s.gen = l.gen & (1<<31 - 1)
	l.sessions[s.slot] = s
	s.flags |= flagAdded
	s.last = l.now
	for side, fd := range s.fds {
		ev := unix.EpollEvent{
			Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET,
			Fd:     s.slot,
			Pad:    int32(s.gen<<1) | int32(side),
		}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev); err != nil {
			l.end(s, os.NewSyscallError("epoll_ctl", err), dirDown)
			return
		}
	}
	if e := s.sweepEvery(); e < l.tick {
		l.tick = e
		l.nextSweep = min(l.nextSweep, l.now+e)
	}
	if s.evict.Load() != 0 { // Registry.Register evicted it already
		l.evict(s)
	}
}

// event handles one epoll event: note readability, then flush toward the
// side and read from it.
func (l *loop) event(ev *unix.EpollEvent) {
	if int(ev.Fd) >= len(l.sessions) {
		return
	}
	s := l.sessions[ev.Fd]
	side := int(ev.Pad & 1)
	if s == nil || s.gen != uint32(ev.Pad)>>1 || s.fds[side] < 0 {
		return
	}
	if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		s.st[side] |= dirReadable
		if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			s.st[side] |= dirHup
		}
	}
	l.pump(s, 1-side)
	l.pump(s, side)
}

// queue puts s on the ready list: it still has bytes to read after its turn.
func (l *loop) queue(s *lsess) {
	if s.flags&flagQueued == 0 {
		s.flags |= flagQueued
		l.ready = append(l.ready, s)
	}
}

// runReady gives the sessions on the ready list another turn.
func (l *loop) runReady() {
	if len(l.ready) == 0 {
		return
	}
	batch := l.ready
	l.ready = l.later[:0]
	for i, s := range batch {
		batch[i] = nil
		s.flags &^= flagQueued
		l.pump(s, dirUp)
		l.pump(s, dirDown)
	}
	l.later = batch[:0]
}

func (l *loop) wakeBy(t int64) {
	if l.wakeAt == 0 || t < l.wakeAt {
		l.wakeAt = t
	}
}

// sweep checks every session's clocks: write timeouts, idle timeouts,
// eviction grace and linger. It also sets the next sweep.
func (l *loop) sweep() {
	l.wakeAt = 0
	tick := int64(maxSweep)
	for _, s := range l.sessions {
		if s == nil {
			continue
		}
		l.check(s)
		if s.flags&flagEnded == 0 {
			tick = min(tick, s.sweepEvery())
		}
	}
	l.tick = tick
	l.nextSweep = l.now + tick
}
