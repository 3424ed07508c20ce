//go:build linux

package splice

// Hand-over of loop sessions to another process: Freeze takes running
// sessions off their loops, Release lets this process's descriptors go,
// Adopt rebuilds a session from descriptors and Moved state received from
// another process, and Thaw puts sessions (frozen or adopted) on loops.

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Frozen is a session taken off its loop (Freeze) or received from another
// process (Adopt): no I/O happens on it until Thaw; Release lets it go.
// A Frozen is used by one goroutine at a time; after Thaw or Release it is
// spent (later calls with it do nothing).
type Frozen struct {
	s       *lsess
	m       Moved
	adopted bool // from Adopt: registered with its Registry only at Thaw
	spent   bool // thawed or released
}

// FDs returns the session's client and node descriptors, still owned by f
// (-1 once released).
func (f *Frozen) FDs() (client, node int) { return int(f.s.fds[sideClient]), int(f.s.fds[sideNode]) }

// Moved returns the session's state as of Freeze (or as given to Adopt). Its
// slices are f's: the caller must not modify them.
func (f *Frozen) Moved() Moved { return f.m }

// Ender returns who is told of the session's end.
func (f *Frozen) Ender() Ender { return f.s.done }

// freezing is one loop's answer to a Freeze: the sessions it took off.
type freezing struct {
	out  []*Frozen
	done chan struct{} // closed once out is complete
}

// Freeze takes every session that is plainly running (both directions open,
// no eviction pending or under way, not lingering) off its loop: out of epoll
// and the sweep, descriptors kept open, still registered with its node (an
// Evict meanwhile is remembered and applied at Thaw). Sessions in any other
// state stay on their loops. Blocks until every loop has answered.
//
// The bytes a session had read but not yet written (a slow peer's
// remainder) are copied into its Moved and its buffers go back to the pool.
// A frozen session is not ended by Close: Thaw (which then ends it with the
// loops closed) or Release it.
func (ls *Loops) Freeze() []*Frozen {
	reqs := make([]*freezing, 0, len(ls.loops))
	for _, l := range ls.loops {
		fz := &freezing{done: make(chan struct{})}
		if l.post(loopCmd{op: cmdFreeze, fz: fz}) {
			reqs = append(reqs, fz)
		}
	}
	var all []*Frozen
	for _, fz := range reqs {
		<-fz.done
		all = append(all, fz.out...)
	}
	return all
}

// Thaw puts sessions back on loops: frozen ones as they were (re-added to
// epoll, both directions treated as readable), adopted ones start (registered
// with their Registry now). Their Ender is called at their end as usual.
//
// Bytes pending at Freeze are written first; the idle clock goes on from
// Moved.Quiet; an eviction that came while the session was frozen is applied
// now. A session thawed after Close ends at once with errLoopClosed.
func (ls *Loops) Thaw(fs []*Frozen) {
	for _, f := range fs {
		if f == nil || f.spent {
			continue
		}
		f.spent = true
		s := f.s
		if f.adopted && s.registry != nil {
			s.registry.Register(s) // may call Evict: that command runs before the thaw, as in Start
		}
		if !s.l.post(loopCmd{op: cmdThaw, s: s, f: f}) {
			s.l.end(s, errLoopClosed, dirDown)
		}
	}
}

// Release lets sessions go to another process: closes this process's
// descriptors with close(2) only (never shutdown: the peer must see nothing),
// unregisters frozen ones from their Registry, frees their buffers. Their
// Ender is NOT called: the caller accounts for them itself.
func (ls *Loops) Release(fs []*Frozen) {
	for _, f := range fs {
		if f == nil || f.spent {
			continue
		}
		f.spent = true
		s := f.s
		for side, fd := range s.fds {
			if fd >= 0 {
				unix.Close(int(fd))
				s.fds[side] = -1
			}
		}
		if !f.adopted && s.registry != nil {
			s.registry.Unregister(s)
		}
		f.m.PendUp, f.m.PendDown = nil, nil
	}
}

// Adopt makes a Frozen of two descriptors received from another process and
// the state that came with them; it starts at Thaw. It owns client and node
// from its return; on error they are still the caller's.
//
// Both descriptors must be TCP sockets; they are made non-blocking and
// close-on-exec. m is checked as input from outside: negative counters or
// durations, a pending remainder larger than a loop's buffer, or tracker
// state no tracker could have are refused. done must not be nil.
func (ls *Loops) Adopt(client, node int, m Moved, reg Registry, done Ender) (*Frozen, error) {
	if len(ls.loops) == 0 {
		return nil, errors.New("proxy: splice adopt: no loops")
	}
	if done == nil {
		return nil, errors.New("proxy: splice adopt: no ender")
	}
	s := &lsess{done: done, registry: reg, idle: m.IdleTimeout, wt: m.WriteTimeout, fds: [2]int32{-1, -1}}
	if err := ls.checkMoved(&m, s); err != nil {
		return nil, err
	}
	if client == node {
		return nil, errors.New("proxy: splice adopt: client and node are one descriptor")
	}
	for _, fd := range [2]int{client, node} {
		if err := checkTCP(fd); err != nil {
			return nil, err
		}
	}
	for _, fd := range [2]int{client, node} {
		if err := prepareFD(fd); err != nil {
			return nil, err
		}
	}
	if s.wt <= 0 {
		s.wt = defaultSpliceWriteTimeout
	}
	s.fds = [2]int32{int32(client), int32(node)}
	s.l = ls.loops[(ls.next.Add(1)-1)%uint32(len(ls.loops))]
	return &Frozen{s: s, m: m, adopted: true}, nil
}

// checkMoved checks m and sets s's tracker, counters and flags from it.
func (ls *Loops) checkMoved(m *Moved, s *lsess) error {
	switch {
	case m.ToNode < 0 || m.ToClient < 0:
		return fmt.Errorf("proxy: splice adopt: negative byte counts %d, %d", m.ToNode, m.ToClient)
	case m.IdleTimeout < 0 || m.WriteTimeout < 0 || m.Quiet < 0:
		return errors.New("proxy: splice adopt: negative duration")
	case len(m.PendUp) > ls.size || len(m.PendDown) > ls.size:
		return fmt.Errorf("proxy: splice adopt: pending bytes %d, %d over the buffer size %d", len(m.PendUp), len(m.PendDown), ls.size)
	case !m.WebSocket && len(m.Tracker) > 0:
		return errors.New("proxy: splice adopt: frame tracker state for a session that is not a WebSocket")
	}
	if m.WebSocket {
		s.flags |= flagWS
		if len(m.Tracker) > 0 {
			if err := s.track.UnmarshalBinary(m.Tracker); err != nil {
				return fmt.Errorf("proxy: splice adopt: %w", err)
			}
		}
	}
	s.dirs[dirUp].n, s.dirs[dirDown].n = m.ToNode, m.ToClient
	return nil
}

// checkTCP refuses a descriptor that is not a TCP socket, or is a
// listening one: TCP_INFO answers for TCP sockets only, with their state.
func checkTCP(fd int) error {
	if fd < 0 {
		return fmt.Errorf("proxy: splice adopt: descriptor %d", fd)
	}
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return fmt.Errorf("proxy: splice adopt: descriptor %d is not a TCP socket: %w", fd, os.NewSyscallError("getsockopt", err))
	}
	if info.State == unix.BPF_TCP_LISTEN {
		return fmt.Errorf("proxy: splice adopt: descriptor %d is a listening socket", fd)
	}
	return nil
}

// prepareFD makes fd non-blocking (a descriptor received from another
// process shares its file description, which is so already) and
// close-on-exec (a later hand-over's new process must not inherit it).
func prepareFD(fd int) error {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err == nil && fl&unix.O_NONBLOCK == 0 {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl|unix.O_NONBLOCK)
	}
	if err == nil {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
	}
	if err != nil {
		return fmt.Errorf("proxy: splice adopt: %w", os.NewSyscallError("fcntl", err))
	}
	return nil
}

// freeze runs a Freeze command on the loop: every plainly running session
// leaves epoll and the table, its pending bytes copied into its Moved.
func (l *loop) freeze(fz *freezing) {
	defer close(fz.done)
	for _, s := range l.sessions {
		if s == nil || !s.freezable() {
			continue
		}
		if f := l.takeOff(s); f != nil {
			fz.out = append(fz.out, f)
		}
	}
	if len(fz.out) == 0 {
		return
	}
	ready := l.ready[:0]
	for _, s := range l.ready {
		if s.flags&flagAdded != 0 {
			ready = append(ready, s)
		}
	}
	clear(l.ready[len(ready):])
	l.ready = ready
}

// freezable reports whether s is plainly running: copying both ways, no
// eviction asked for, nothing ended.
func (s *lsess) freezable() bool {
	return s.flags&(flagAdded|flagEnded) == flagAdded && s.phase == phaseRun && s.evict.Load() == 0 &&
		s.st[dirUp]&dirDone == 0 && s.st[dirDown]&dirDone == 0 && s.fds[sideClient] >= 0 && s.fds[sideNode] >= 0
}

// takeOff removes s from epoll and the table and returns it frozen; nil
// (s stays on the loop) if epoll refuses.
func (l *loop) takeOff(s *lsess) *Frozen {
	for side, fd := range s.fds {
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, int(fd), nil); err != nil {
			if side == sideNode {
				ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: s.slot, Pad: int32(s.gen << 1)}
				_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, int(s.fds[sideClient]), &ev)
			}
			return nil
		}
	}
	l.sessions[s.slot] = nil
	l.free = append(l.free, s.slot)
	s.flags &^= flagAdded | flagQueued
	s.st = [2]uint8{}
	f := &Frozen{s: s, m: Moved{
		WebSocket:    s.flags&flagWS != 0,
		ToNode:       s.dirs[dirUp].n,
		ToClient:     s.dirs[dirDown].n,
		IdleTimeout:  s.idle,
		WriteTimeout: s.wt,
		Quiet:        time.Duration(max(0, l.now-s.last)),
	}}
	if f.m.WebSocket {
		f.m.Tracker, _ = s.track.MarshalBinary()
	}
	for d, to := range [2]*[]byte{&f.m.PendUp, &f.m.PendDown} {
		if h := &s.dirs[d]; h.pend != nil {
			*to = append([]byte(nil), h.pend.b[h.pend.off:h.pend.end]...)
			l.release(h)
		}
	}
	return f
}

// thaw runs a Thaw command on the loop: s goes back in the table and epoll
// with its pending bytes, readable both ways, its idle clock set back by
// Quiet; an eviction remembered meanwhile applies (add).
func (l *loop) thaw(f *Frozen) {
	s := f.s
	for d, p := range [2][]byte{f.m.PendUp, f.m.PendDown} {
		if len(p) == 0 {
			continue
		}
		b := l.ls.bufs.Get().(*pendBuf)
		b.off, b.end, b.since = 0, int32(copy(b.b, p)), l.now
		s.dirs[d].pend = b
		bufsOut.Add(1)
	}
	s.st = [2]uint8{dirReadable, dirReadable}
	l.add(s)
	if s.flags&flagEnded != 0 {
		return
	}
	if s.phase == phaseRun {
		s.last = l.now - int64(f.m.Quiet)
	}
	l.pump(s, dirUp)
	l.pump(s, dirDown)
}
