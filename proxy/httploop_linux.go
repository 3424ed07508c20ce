//go:build linux

package proxy

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tether-lb/tether/proxy/internal/sockio"
	"golang.org/x/sys/unix"
)

// httpLoops are the epoll loops that hold idle plain keep-alive client
// connections (httploop.go says how a connection moves between a loop and
// the goroutine that serves it). A loop is one epoll instance and one
// goroutine ((*httpLoop).run), parked in Go's poller on the epoll
// descriptor as the splice loops are; its timer is that descriptor's read
// deadline, and a sweep on it closes connections idle past --idle-timeout
// (--header-timeout before the first request). Safe for concurrent use.
type httpLoops struct {
	s       *Server
	loops   []*httpLoop
	next    atomic.Uint32
	stopped atomic.Bool // Close began: a connection parked now is closed instead
	wg      sync.WaitGroup
	once    sync.Once

	wmu     sync.Mutex     // guards idle and done
	idle    []*httpWorker  // workers waiting for a connection, the last idled first
	done    bool           // Close ended the idle workers: none idles again
	workers sync.WaitGroup // one per worker goroutine
}

// httpWorker is a goroutine that serves readable connections for the loops
// ((*httpLoops).work). Workers outlive the connections they serve, so a
// request does not pay for a new goroutine nor grow a fresh stack; at most
// maxIdleWorkers of them wait for work, holding no connection.
type httpWorker struct {
	next chan *conn // the next connection to serve; closed by Close
}

// maxIdleWorkers bounds the workers that wait for a connection; one that
// finds that many waiting ends.
const maxIdleWorkers = 64

// httpLoop is one epoll instance, its goroutine and its connections.
type httpLoop struct {
	ls     *httpLoops
	epfd   int
	epfile *os.File        // epfd in Go's poller; owns and closes it
	rc     syscall.RawConn // epfile's
	evfd   int             // eventfd: post wakes the loop with it

	mu      sync.Mutex // guards conns, free, gen, cmds, stopped
	conns   []*conn    // by slot; nil = free
	free    []int32
	gen     uint32
	cmds    []int
	stopped bool

	// Only run touches the fields below.
	events    []unix.EpollEvent
	turnFn    func(uintptr) bool
	perr      error
	stop      bool
	draining  bool
	batch     []*conn
	base      time.Time
	deadline  int64 // loop clock of epfile's read deadline
	nextSweep int64
}

// testHookLoopDrain, set by tests only, runs on a loop as it begins to
// drain, before it looks at its idle connections.
var testHookLoopDrain func()

// Commands other goroutines post to a loop.
const (
	hlDrain = iota + 1 // Shutdown began: close the idle connections
	hlStop             // close every idle connection and end
)

// httpWakeSlot marks the eventfd's events; connection slots are >= 0.
const httpWakeSlot = -1

// newHTTPLoops starts n loops (<= 0: one per CPU).
func newHTTPLoops(s *Server, n int) (*httpLoops, error) {
	if n <= 0 {
		n = max(1, runtime.GOMAXPROCS(0))
	}
	ls := &httpLoops{s: s}
	for range n {
		l, err := newHTTPLoop(ls)
		if err != nil {
			ls.Close()
			return nil, err
		}
		ls.loops = append(ls.loops, l)
		ls.wg.Go(l.run)
	}
	return ls, nil
}

func newHTTPLoop(ls *httpLoops) (*httpLoop, error) {
	ep, err := sockio.NewEpoll("http-epoll", httpWakeSlot)
	if err != nil {
		return nil, err
	}
	l := &httpLoop{ls: ls, epfd: ep.FD, evfd: ep.Wake, epfile: ep.File, rc: ep.RC, base: time.Now(), deadline: -1}
	l.events = make([]unix.EpollEvent, 128)
	l.turnFn = l.turn
	l.nextSweep = int64(time.Second)
	return l, nil
}

// Close stops the loops: each closes the connections it holds idle and its
// goroutine returns; Close waits for that. Connections being served close
// when their burst ends. Later calls do nothing; a nil *httpLoops may be
// closed.
func (ls *httpLoops) Close() {
	if ls == nil {
		return
	}
	ls.once.Do(func() {
		ls.stopped.Store(true)
		for _, l := range ls.loops {
			l.post(hlStop)
		}
		ls.wg.Wait()
		ls.wmu.Lock()
		ls.done = true
		for _, w := range ls.idle {
			close(w.next)
		}
		ls.idle = nil
		ls.wmu.Unlock()
		ls.workers.Wait()
	})
}

// dispatch has c, just made lcBusy by its loop, served by an idle worker,
// or by a new one.
func (ls *httpLoops) dispatch(c *conn) {
	ls.wmu.Lock()
	if n := len(ls.idle); n > 0 {
		w := ls.idle[n-1]
		ls.idle[n-1] = nil
		ls.idle = ls.idle[:n-1]
		ls.wmu.Unlock()
		w.next <- c // buffered: an idle worker's channel is empty
		return
	}
	ls.wmu.Unlock()
	ls.workers.Add(1)
	go ls.work(c)
}

// work is a worker's goroutine: it serves c, then waits for the next
// connection its loops hand it, until Close or until enough others wait.
func (ls *httpLoops) work(c *conn) {
	defer ls.workers.Done()
	w := &httpWorker{next: make(chan *conn, 1)}
	for {
		c.loopServe()
		ls.wmu.Lock()
		if ls.done || len(ls.idle) >= maxIdleWorkers {
			ls.wmu.Unlock()
			return
		}
		ls.idle = append(ls.idle, w)
		ls.wmu.Unlock()
		var ok bool
		if c, ok = <-w.next; !ok {
			return
		}
	}
}

// drain makes every loop close its idle connections (Shutdown); a
// connection whose first request may still come is kept until
// firstRequestGrace after its accept.
func (ls *httpLoops) drain() {
	if ls == nil {
		return
	}
	for _, l := range ls.loops {
		l.post(hlDrain)
	}
}

// park hands c, just served, to a loop until it is readable again. It
// reports false when c must be served again at once: readiness came while
// it was served, or the last read filled its buffer (full) and the socket
// may hold more than epoll will report again. After true the caller no
// longer touches c.
func (ls *httpLoops) park(c *conn, full bool) bool {
	if full {
		return false
	}
	c.lc.since.Store(time.Now().UnixNano())
	// A connection idles cold from its first park after a request; one
	// that parked before its first request did so warm.
	coolNow := !c.lc.woke && !c.lc.cold && c.served > 0
	if c.lc.l == nil {
		if coolNow {
			ls.cool(c)
		}
		return ls.add(c)
	}
	if coolNow {
		if err := c.lc.l.chill(c); err != nil {
			ls.s.errLog.Warn().Err(err).Str("remote", c.remoteIP).Msg("http loop: idle connection closed")
			c.lc.state.Store(lcGone)
			c.close()
			return true
		}
	}
	if !c.lc.state.CompareAndSwap(lcBusy, lcIdle) {
		c.lc.state.Store(lcBusy) // lcReady: serve again
		return false
	}
	if ls.stopped.Load() && c.lc.state.CompareAndSwap(lcIdle, lcGone) {
		c.close() // its loop may have ended before it saw c idle
	}
	return true
}

// add puts c, idle, in a loop's epoll (round robin), once per connection:
// edge-triggered, it stays there until the connection closes or leaves for
// the splice engine. A connection the loop cannot take keeps a goroutine.
func (ls *httpLoops) add(c *conn) bool {
	l := ls.loops[(ls.next.Add(1)-1)%uint32(len(ls.loops))]
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		c.close()
		return true
	}
	if k := len(l.free); k > 0 {
		c.lc.slot = l.free[k-1]
		l.free = l.free[:k-1]
	} else {
		c.lc.slot = int32(len(l.conns))
		l.conns = append(l.conns, nil)
	}
	l.gen++
	c.lc.gen = l.gen
	l.conns[c.lc.slot] = c
	l.mu.Unlock()
	c.lc.l = l
	slot, gen := c.lc.slot, c.lc.gen
	cold, cfd := c.lc.cold, int(c.lc.fd)
	c.lc.state.Store(lcIdle)
	var err error
	if cold {
		err = l.register(cfd, slot, gen)
	} else if cerr := c.raw.Control(func(fd uintptr) { err = l.register(int(fd), slot, gen) }); err == nil {
		err = cerr
	}
	if err == nil {
		return true // a request already there is reported at once
	}
	if !c.lc.state.CompareAndSwap(lcIdle, lcBusy) {
		return true // the loop closed it meanwhile (Close)
	}
	l.forget(c)
	c.lc.l = nil
	ls.s.errLog.Warn().Err(os.NewSyscallError("epoll_ctl", err)).Str("remote", c.remoteIP).Msg("http loop: connection not taken; it keeps a goroutine")
	if c.lc.cold && !ls.warm(c) {
		return true
	}
	c.lc.off = true
	c.run(false)
	return true
}

// register adds fd to l's epoll under slot and gen, edge-triggered.
func (l *httpLoop) register(fd int, slot int32, gen uint32) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: slot, Pad: int32(gen)}
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// cool lets go of the net.Conn of c, busy and out of any epoll, and keeps
// a duplicate of its descriptor instead: what an idle connection then
// holds is its conn and its socket. A connection that cannot be cooled
// (no descriptor left for the duplicate) stays warm.
func (ls *httpLoops) cool(c *conn) {
	tc, ok := c.nc.(*net.TCPConn)
	if !ok {
		return
	}
	fd, err := sockio.DupFD(tc)
	if err != nil {
		ls.s.errLog.Debug().Err(err).Str("remote", c.remoteIP).Msg("http loop: connection kept warm")
		c.lc.woke = true // it parks warm: not tried at each request
		return
	}
	ls.s.conns.setCold(c, fd)
	tc.Close() // out of Go's poller, then close(2): fd keeps the socket
}

// warm gives c, busy and cold, its net.Conn back before it is served
// with a goroutine of its own (add, when its loop refused it). It reports
// false when the client hung up or that failed; c is then closed and
// accounted for.
func (ls *httpLoops) warm(c *conn) bool {
	if hungUp(int(c.lc.fd)) {
		// The client closed its idle connection (or reset it): there is
		// nothing to read, and no net.Conn is made to find that out.
		c.close()
		return false
	}
	if err := ls.warmUp(c); err != nil {
		ls.s.errLog.Warn().Err(err).Str("remote", c.remoteIP).Msg("http loop: idle connection lost")
		c.close()
		return false
	}
	return true
}

// warmUp makes c, busy and cold, a net.Conn again (net.FileConn, a
// duplicate in Go's poller): c leaves its loop's epoll, where its next park
// puts it anew. On error c has no socket left (its descriptor is closed);
// the caller ends it.
func (ls *httpLoops) warmUp(c *conn) error {
	ls.remove(c)
	if h := testHookWarm.Load(); h != nil {
		(*h)()
	}
	f := os.NewFile(uintptr(c.lc.fd), "")
	nc, err := net.FileConn(f)
	f.Close()
	ls.s.conns.setWarm(c, nc)
	return err
}

// testHookWarm, set by tests only, runs when a cold connection is made a
// net.Conn again.
var testHookWarm atomic.Pointer[func()]

// hungUp reports a socket whose peer closed or reset it with nothing left
// to read: a one-byte peek finds the end of the stream, or an error.
func hungUp(fd int) bool {
	var b [1]byte
	for {
		n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			return true
		}
		return n == 0
	}
}

// closeFD closes a cold connection's descriptor; epoll forgets it with it.
func closeFD(fd int32) { unix.Close(int(fd)) }

// remove takes c out of its loop for good, before the splice engine takes
// its socket: the engine may duplicate the descriptor, and epoll would go on
// reporting the socket under the slot while any copy lives.
func (ls *httpLoops) remove(c *conn) {
	l := c.lc.l
	if l == nil {
		return
	}
	if c.lc.cold {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, int(c.lc.fd), nil)
	} else {
		c.raw.Control(func(fd uintptr) { unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
	}
	l.forget(c)
	c.lc.l = nil
}

// forget frees c's slot (its socket closed or left epoll).
func (l *httpLoop) forget(c *conn) {
	l.mu.Lock()
	if s := c.lc.slot; int(s) < len(l.conns) && l.conns[s] == c {
		l.conns[s] = nil
		l.free = append(l.free, s)
	}
	l.mu.Unlock()
}

// post queues a command and wakes the loop.
func (l *httpLoop) post(cmd int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	l.cmds = append(l.cmds, cmd)
	if cmd == hlStop {
		l.stopped = true
	}
	_, _ = unix.Write(l.evfd, wakeBytes[:]) // under mu: the loop closes evfd under mu
}

var wakeBytes = [8]byte{1}

func (l *httpLoop) clock() int64 { return int64(time.Since(l.base)) }

// run is the loop's goroutine: it lives inside RawConn.Read of the epoll
// descriptor (turn), which returns for a stop, an error or the timer.
func (l *httpLoop) run() {
	for {
		err := l.rc.Read(l.turnFn)
		if l.stop {
			l.shutdown()
			return
		}
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			err = l.perr
		}
		if err == nil {
			if now := l.clock(); now >= l.nextSweep {
				l.sweep(now)
			}
			l.deadline = -1 // it passed: set it again
			err = l.arm()
		}
		if err != nil {
			l.ls.s.log.Error().Err(err).Msg("http loop: waiting for events failed; its idle connections close")
			l.ls.stopped.Store(true) // connections served now close when their burst ends
			l.shutdown()
			return
		}
	}
}

// turn handles what epoll has, then returns false to park until more comes
// or the timer passes; true ends the Read (a stop, an error).
func (l *httpLoop) turn(fd uintptr) bool {
	for {
		n, err := sockio.EpollNow(int(fd), l.events)
		if err != nil && err != unix.EINTR {
			l.perr = os.NewSyscallError("epoll_wait", err)
			return true
		}
		woken := false
		l.mu.Lock()
		for i := range n {
			ev := &l.events[i]
			if ev.Fd == httpWakeSlot {
				woken = true
				continue
			}
			if int(ev.Fd) < len(l.conns) {
				if c := l.conns[ev.Fd]; c != nil && c.lc.gen == uint32(ev.Pad) {
					l.batch = append(l.batch, c)
				}
			}
		}
		l.mu.Unlock()
		for i, c := range l.batch {
			l.batch[i] = nil
			l.ls.readable(c)
		}
		l.batch = l.batch[:0]
		if woken && l.commands() {
			l.stop = true
			return true
		}
		if now := l.clock(); now >= l.nextSweep {
			l.sweep(now)
		}
		if n == len(l.events) || err != nil {
			continue
		}
		if l.perr = l.arm(); l.perr != nil {
			return true
		}
		return false
	}
}

// readable handles readiness of c: an idle connection goes to a worker; a
// busy one learns it when it parks.
func (ls *httpLoops) readable(c *conn) {
	for {
		switch c.lc.state.Load() {
		case lcIdle:
			if c.lc.state.CompareAndSwap(lcIdle, lcBusy) {
				ls.dispatch(c)
				return
			}
		case lcBusy:
			if c.lc.state.CompareAndSwap(lcBusy, lcReady) {
				return
			}
		default:
			return
		}
	}
}

// arm sets the epoll descriptor's read deadline to the next sweep, when
// that changed.
func (l *httpLoop) arm() error {
	if l.nextSweep == l.deadline {
		return nil
	}
	l.deadline = l.nextSweep
	return l.epfile.SetReadDeadline(l.base.Add(time.Duration(max(l.nextSweep, l.clock()+int64(time.Millisecond)))))
}

// commands runs what was posted; it reports a stop.
func (l *httpLoop) commands() (stop bool) {
	var b [8]byte
	_, _ = unix.Read(l.evfd, b[:])
	l.mu.Lock()
	cmds := l.cmds
	l.cmds = nil
	l.mu.Unlock()
	for _, cmd := range cmds {
		switch cmd {
		case hlDrain:
			if h := testHookLoopDrain; h != nil {
				h()
			}
			l.draining = true
			l.sweep(l.clock())
		case hlStop:
			stop = true
		}
	}
	return stop
}

// sweep closes the idle connections past their timeout (while draining:
// every idle one, but for a first request still due) and sets the next
// sweep: a quarter of the shortest timeout, within 10 ms and a second.
func (l *httpLoop) sweep(now int64) {
	cfg := l.ls.s.cfg()
	tick := min(cfg.IdleTimeout, cfg.HeaderTimeout) / 4
	if l.draining {
		tick = firstRequestGrace / 10
	}
	tick = min(max(tick, 10*time.Millisecond), time.Second)
	l.nextSweep = now + int64(tick)

	wall := time.Now()
	cooled := 0
	l.mu.Lock()
	for _, c := range l.conns {
		if c != nil && c.lc.state.Load() == lcIdle {
			l.batch = append(l.batch, c)
		}
	}
	l.mu.Unlock()
	for i, c := range l.batch {
		l.batch[i] = nil
		// Only this goroutine moves c out of lcIdle but park after Close:
		// c's fields are the serving goroutine's last writes.
		limit := cfg.IdleTimeout
		if c.served == 0 {
			limit = cfg.HeaderTimeout
		}
		expired := wall.UnixNano()-c.lc.since.Load() > int64(limit)
		if l.draining {
			expired = c.served > 0 || !wall.Before(c.bornAt().Add(firstRequestGrace))
			if expired && c.readableNow() && c.lc.state.CompareAndSwap(lcIdle, lcBusy) {
				// A request arrived as the drain began (its event may be
				// in this very turn): it is answered, with Connection:
				// close, rather than reset.
				l.ls.dispatch(c)
				continue
			}
		}
		if expired && c.lc.state.CompareAndSwap(lcIdle, lcGone) {
			c.close()
			continue
		}
		if !expired && !l.draining && cooled < maxCoolPerSweep && !c.lc.cold &&
			wall.UnixNano()-c.lc.since.Load() > int64(coldAfter) && c.lc.state.CompareAndSwap(lcIdle, lcBusy) {
			cooled++
			l.recool(c)
		}
	}
	l.batch = l.batch[:0]
}

// maxCoolPerSweep bounds the connections a sweep cools, and so the time
// it keeps its loop from events (a few system calls each); the others wait
// for the next sweep.
const maxCoolPerSweep = 256

// recool cools c, warm and idle past coldAfter, which the loop has just
// made busy: its descriptor leaves the epoll, its duplicate takes the same
// slot. Readiness meanwhile is reported by the epoll at once, in the
// loop's next turn.
func (l *httpLoop) recool(c *conn) {
	if err := l.chill(c); err != nil {
		l.ls.s.errLog.Warn().Err(err).Str("remote", c.remoteIP).Msg("http loop: idle connection closed")
		c.lc.state.Store(lcGone)
		c.close()
		return
	}
	if !c.lc.state.CompareAndSwap(lcBusy, lcIdle) {
		c.lc.state.Store(lcBusy) // lcReady: readable already
		l.ls.dispatch(c)
	}
}

// chill cools c, busy and warm in l's epoll: its descriptor leaves the
// epoll and its duplicate takes the same slot, where readiness that came
// meanwhile is reported at once (c's state then says lcReady). After an
// error c is in no epoll.
func (l *httpLoop) chill(c *conn) error {
	c.raw.Control(func(fd uintptr) { unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
	l.ls.cool(c)
	var err error
	if c.lc.cold {
		err = l.register(int(c.lc.fd), c.lc.slot, c.lc.gen)
	} else if cerr := c.raw.Control(func(fd uintptr) { err = l.register(int(fd), c.lc.slot, c.lc.gen) }); err == nil {
		err = cerr
	}
	if err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// readableNow reports whether c, idle on its loop, has bytes or a hang-up
// waiting, warm or cold.
func (c *conn) readableNow() bool {
	if c.lc.cold {
		return sockio.ReadableFD(int(c.lc.fd))
	}
	return sockio.ReadableNow(c.nc)
}

// shutdown closes every idle connection, then the loop's descriptors.
func (l *httpLoop) shutdown() {
	l.mu.Lock()
	l.stopped = true
	for _, c := range l.conns {
		if c != nil {
			l.batch = append(l.batch, c)
		}
	}
	l.mu.Unlock()
	for i, c := range l.batch {
		l.batch[i] = nil
		if c.lc.state.CompareAndSwap(lcIdle, lcGone) {
			c.close()
		}
	}
	l.batch = l.batch[:0]
	l.mu.Lock()
	unix.Close(l.evfd)
	l.epfile.Close()
	l.mu.Unlock()
}
