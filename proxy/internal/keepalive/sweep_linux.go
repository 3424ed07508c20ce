//go:build linux

package keepalive

import "time"

// The sweep: on each loop's timer, what becomes of the connections it
// holds idle (closed past their time, cooled when idle long, served when a
// drain finds a request there).

// sweep closes the idle connections past their time (while draining: those
// the drain may close), cools those Conn.Sweep says to, and sets the next
// sweep.
func (l *loop) sweep(now int64) {
	tick := time.Second
	if f := l.ls.opt.Tick; f != nil {
		tick = f(l.draining)
	}
	tick = min(max(tick, 10*time.Millisecond), time.Second)
	l.nextSweep = now + int64(tick)

	wall := time.Now().UnixNano()
	cooled := 0
	l.mu.Lock()
	for _, c := range l.conns {
		if c != nil && c.Place().Idle() {
			l.batch = append(l.batch, c)
		}
	}
	l.mu.Unlock()
	for i, c := range l.batch {
		l.batch[i] = nil
		// The sweep owns c (busy) while it looks at it: neither a worker
		// nor a hand-over's Take changes it meanwhile. Readiness that comes
		// meanwhile marks it ready, and it is served once let go.
		p := c.Place()
		since := p.since.Load()
		if !p.state.CompareAndSwap(idle, busy) {
			continue
		}
		expired, cool := c.Sweep(wall, since, l.draining)
		switch {
		case l.draining && expired && c.ReadableNow():
			// A request arrived as the drain began (its event may be in
			// this very turn): it is answered, its connection closing
			// after it, rather than reset.
			l.ls.dispatch(c)
		case expired:
			p.state.Store(gone)
			c.Close()
		case cool && !l.draining && cooled < maxCoolPerSweep:
			cooled++
			l.recool(c)
		default:
			l.letGo(c)
		}
	}
	l.batch = l.batch[:0]
}

// maxCoolPerSweep bounds the connections a sweep cools, and so the time it
// keeps its loop from events (a few system calls each); the others wait for
// the next sweep.
const maxCoolPerSweep = 256

// recool cools c, warm and idle long, which the loop has just made busy;
// readiness meanwhile is reported by the epoll at once, in the loop's next
// turn.
func (l *loop) recool(c Conn) {
	p := c.Place()
	if err := l.chill(c); err != nil {
		p.state.Store(gone)
		c.Lost(err)
		return
	}
	l.letGo(c)
}

// letGo makes c, which the loop made busy, idle again; if readiness came
// meanwhile (ready) it is served instead.
func (l *loop) letGo(c Conn) {
	p := c.Place()
	if !p.state.CompareAndSwap(busy, idle) {
		p.state.Store(busy) // ready: readable already
		l.ls.dispatch(c)
	}
}

// chill cools c, busy and warm in l's epoll: its descriptor leaves the
// epoll and the one it keeps takes the same slot, where readiness that came
// meanwhile is reported at once (c's state then says ready). After an
// error c is in no epoll.
func (l *loop) chill(c Conn) error {
	l.deregister(c)
	c.Cool()
	return l.register(c)
}
