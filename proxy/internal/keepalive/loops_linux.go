//go:build linux

package keepalive

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tether-lb/tether/proxy/internal/sockio"
	"golang.org/x/sys/unix"
)

// Loops are the epoll loops. A loop is one epoll instance and one goroutine
// ((*loop).run), parked in Go's poller on the epoll descriptor; its timer
// is that descriptor's read deadline, and a sweep on it asks each idle
// connection whether it is past its time (Conn.Sweep). Safe for concurrent
// use.
type Loops struct {
	opt     Options
	loops   []*loop
	next    atomic.Uint32
	stopped atomic.Bool // Close began: a connection parked now is closed instead
	wg      sync.WaitGroup
	once    sync.Once

	wmu     sync.Mutex     // guards idle and done
	idle    []*worker      // workers waiting for a connection, the last idled first
	done    bool           // Close ended the idle workers: none idles again
	workers sync.WaitGroup // one per worker goroutine
}

// worker is a goroutine that serves readable connections for the loops
// ((*Loops).work). Workers outlive the connections they serve, so a request
// does not pay for a new goroutine nor grow a fresh stack; at most
// maxIdleWorkers of them wait for work, holding no connection.
type worker struct {
	next chan Conn // the next connection to serve; closed by Close
}

// maxIdleWorkers bounds the workers that wait for a connection; one that
// finds that many waiting ends.
const maxIdleWorkers = 64

// loop is one epoll instance, its goroutine and its connections.
type loop struct {
	ls     *Loops
	epfd   int
	epfile *os.File        // epfd in Go's poller; owns and closes it
	rc     syscall.RawConn // epfile's
	evfd   int             // eventfd: post wakes the loop with it

	mu      sync.Mutex // guards conns, free, gen, cmds, stopped
	conns   []Conn     // by slot; nil = free
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
	batch     []Conn
	base      time.Time
	deadline  int64 // loop clock of epfile's read deadline
	nextSweep int64
}

// TestHookDrain, set by tests only, runs on a loop as it begins to drain,
// before it looks at its idle connections.
var TestHookDrain func()

// Commands other goroutines post to a loop.
const (
	cmdDrain = iota + 1 // a drain began: close the idle connections
	cmdStop             // close every idle connection and end
)

// wakeSlot marks the eventfd's events; connection slots are >= 0.
const wakeSlot = -1

// New starts the loops.
func New(opt Options) (*Loops, error) {
	n := opt.Loops
	if n <= 0 {
		n = max(1, runtime.GOMAXPROCS(0))
	}
	ls := &Loops{opt: opt}
	for range n {
		l, err := newLoop(ls)
		if err != nil {
			ls.Close()
			return nil, err
		}
		ls.loops = append(ls.loops, l)
		ls.wg.Go(l.run)
	}
	return ls, nil
}

func newLoop(ls *Loops) (*loop, error) {
	ep, err := sockio.NewEpoll("http-epoll", wakeSlot)
	if err != nil {
		return nil, err
	}
	l := &loop{ls: ls, epfd: ep.FD, evfd: ep.Wake, epfile: ep.File, rc: ep.RC, base: time.Now(), deadline: -1}
	l.events = make([]unix.EpollEvent, 128)
	l.turnFn = l.turn
	l.nextSweep = int64(time.Second)
	return l, nil
}

// Close stops the loops: each closes the connections it holds idle and its
// goroutine returns; Close waits for that, and for the idle workers.
// Connections being served are closed when they park. Later calls do
// nothing; a nil *Loops may be closed.
func (ls *Loops) Close() {
	if ls == nil {
		return
	}
	ls.once.Do(func() {
		ls.stopped.Store(true)
		for _, l := range ls.loops {
			l.post(cmdStop)
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

// dispatch has c, just made busy by its loop, served by an idle worker, or
// by a new one.
func (ls *Loops) dispatch(c Conn) {
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
func (ls *Loops) work(c Conn) {
	defer ls.workers.Done()
	w := &worker{next: make(chan Conn, 1)}
	for {
		c.Serve()
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

// Drain makes every loop close its idle connections, but for those that
// Conn.Sweep says may stay (a first request still due); a request that
// arrived as the drain began is served first.
func (ls *Loops) Drain() {
	if ls == nil {
		return
	}
	for _, l := range ls.loops {
		l.post(cmdDrain)
	}
}

// Park hands c, busy and just served, to a loop until it is readable
// again; with cool, c is cooled first (Conn.Cool). It reports false when c
// must be served again at once: readiness came while it was served. After
// true the caller no longer touches c.
func (ls *Loops) Park(c Conn, cool bool) bool {
	p := c.Place()
	p.since.Store(time.Now().UnixNano())
	switch {
	case p.l == nil:
		if cool {
			c.Cool()
		}
		if !ls.add(c) {
			return true
		}
	case cool:
		if err := p.l.chill(c); err != nil {
			p.state.Store(gone)
			c.Lost(err)
			return true
		}
	}
	// Readiness reported while c was busy (its first registration
	// included) marked it ready: it is served again.
	if !p.state.CompareAndSwap(busy, idle) {
		p.state.Store(busy)
		return false
	}
	if ls.stopped.Load() && p.state.CompareAndSwap(idle, gone) {
		c.Close() // its loop may have ended before it saw c idle
	}
	return true
}

// add puts c, busy, in a loop's epoll (round robin), once per connection:
// edge-triggered, it stays there until the connection closes or leaves
// (Remove). It reports false when c is not on a loop: closed (the loop
// stopped) or Refused.
func (ls *Loops) add(c Conn) bool {
	p := c.Place()
	l := ls.loops[(ls.next.Add(1)-1)%uint32(len(ls.loops))]
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		c.Close()
		return false
	}
	if k := len(l.free); k > 0 {
		p.slot = l.free[k-1]
		l.free = l.free[:k-1]
	} else {
		p.slot = int32(len(l.conns))
		l.conns = append(l.conns, nil)
	}
	l.gen++
	p.gen = l.gen
	l.conns[p.slot] = c
	l.mu.Unlock()
	p.l = l
	if err := l.register(c); err != nil {
		l.forget(c)
		p.l = nil
		c.Refused(err)
		return false
	}
	return true
}

// register adds c's descriptor, busy, to l's epoll under its slot and
// generation, edge-triggered. Readiness from then on marks c ready.
func (l *loop) register(c Conn) error {
	p := c.Place()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: p.slot, Pad: int32(p.gen)}
	if err := l.ctl(c, unix.EPOLL_CTL_ADD, ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// deregister takes c's descriptor out of l's epoll.
func (l *loop) deregister(c Conn) {
	l.ctl(c, unix.EPOLL_CTL_DEL, unix.EpollEvent{})
}

// ctl is epoll_ctl(op) of c's socket with ev: on the bare descriptor of a
// cold connection (no closure, nothing allocated), through the RawConn of
// a warm one.
func (l *loop) ctl(c Conn, op int, ev unix.EpollEvent) error {
	fd, rc := c.Socket()
	if rc == nil {
		return unix.EpollCtl(l.epfd, op, fd, &ev)
	}
	return l.ctlRaw(rc, op, ev)
}

// ctlRaw is ctl through a RawConn; its closure allocates, so it is kept
// out of ctl, whose cold path then allocates nothing.
func (l *loop) ctlRaw(rc syscall.RawConn, op int, ev unix.EpollEvent) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) { err = unix.EpollCtl(l.epfd, op, int(fd), &ev) }); cerr != nil {
		return cerr
	}
	return err
}

// Remove takes c, busy, out of its loop for good: before its descriptor
// changes (a cold connection made a net.Conn again) or another engine
// takes its socket (a splice engine may duplicate the descriptor, and epoll
// would go on reporting the socket under the slot while any copy lives).
// Its next Park puts it on a loop anew.
func (ls *Loops) Remove(c Conn) {
	p := c.Place()
	l := p.l
	if l == nil {
		return
	}
	l.deregister(c)
	l.forget(c)
	p.l = nil
}

// Take makes c busy if it is idle on its loop and removes it (a hand-over
// to another process takes it); it reports false when c was not idle.
func (ls *Loops) Take(c Conn) bool {
	// idle is stored after its loop is set: the swap makes p.l ours to read.
	if !c.Place().state.CompareAndSwap(idle, busy) {
		return false
	}
	ls.Remove(c)
	return true
}

// Idle counts the connections the loops hold idle.
func (ls *Loops) Idle() int {
	n := 0
	for _, l := range ls.loops {
		l.mu.Lock()
		for _, c := range l.conns {
			if c != nil && c.Place().Idle() {
				n++
			}
		}
		l.mu.Unlock()
	}
	return n
}

// forget frees c's slot (its socket closed or left epoll).
func (l *loop) forget(c Conn) {
	l.mu.Lock()
	if s := c.Place().slot; int(s) < len(l.conns) && l.conns[s] == c {
		l.conns[s] = nil
		l.free = append(l.free, s)
	}
	l.mu.Unlock()
}

// post queues a command and wakes the loop.
func (l *loop) post(cmd int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	l.cmds = append(l.cmds, cmd)
	if cmd == cmdStop {
		l.stopped = true
	}
	_, _ = unix.Write(l.evfd, wakeBytes[:]) // under mu: the loop closes evfd under mu
}

var wakeBytes = [8]byte{1}

func (l *loop) clock() int64 { return int64(time.Since(l.base)) }

// run is the loop's goroutine: it lives inside RawConn.Read of the epoll
// descriptor (turn), which returns for a stop, an error or the timer.
func (l *loop) run() {
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
			if log := l.ls.opt.Log; log != nil {
				log.Error().Err(err).Msg("http loop: waiting for events failed; its idle connections close")
			}
			l.ls.stopped.Store(true) // connections served now close when their burst ends
			l.shutdown()
			return
		}
	}
}

// turn handles what epoll has, then returns false to park until more comes
// or the timer passes; true ends the Read (a stop, an error).
func (l *loop) turn(fd uintptr) bool {
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
			if ev.Fd == wakeSlot {
				woken = true
				continue
			}
			if int(ev.Fd) < len(l.conns) {
				if c := l.conns[ev.Fd]; c != nil && c.Place().gen == uint32(ev.Pad) {
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
func (ls *Loops) readable(c Conn) {
	p := c.Place()
	for {
		switch p.state.Load() {
		case idle:
			if p.state.CompareAndSwap(idle, busy) {
				ls.dispatch(c)
				return
			}
		case busy:
			if p.state.CompareAndSwap(busy, ready) {
				return
			}
		default:
			return
		}
	}
}

// arm sets the epoll descriptor's read deadline to the next sweep, when
// that changed.
func (l *loop) arm() error {
	if l.nextSweep == l.deadline {
		return nil
	}
	l.deadline = l.nextSweep
	return l.epfile.SetReadDeadline(l.base.Add(time.Duration(max(l.nextSweep, l.clock()+int64(time.Millisecond)))))
}

// commands runs what was posted; it reports a stop.
func (l *loop) commands() (stop bool) {
	var b [8]byte
	_, _ = unix.Read(l.evfd, b[:])
	l.mu.Lock()
	cmds := l.cmds
	l.cmds = nil
	l.mu.Unlock()
	for _, cmd := range cmds {
		switch cmd {
		case cmdDrain:
			if h := TestHookDrain; h != nil {
				h()
			}
			l.draining = true
			l.sweep(l.clock())
		case cmdStop:
			stop = true
		}
	}
	return stop
}

// shutdown closes every idle connection, then the loop's descriptors.
func (l *loop) shutdown() {
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
		if c.Place().state.CompareAndSwap(idle, gone) {
			c.Close()
		}
	}
	l.batch = l.batch[:0]
	l.mu.Lock()
	unix.Close(l.evfd)
	l.epfile.Close()
	l.mu.Unlock()
}
