package splice

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/sockio"
	"github.com/tether-lb/tether/proxy/internal/wire"
)

// bufsOut counts copy buffers borrowed by splices and not yet given
// back, across all splicers. An idle session holds none.
var bufsOut atomic.Int64

// goEngine is the goroutine Engine: per session, the calling goroutine copies
// node→client and one more goroutine copies client→node. Each direction waits
// for readability without a buffer and borrows one from bufs only to move the
// bytes that are there.
type goEngine struct {
	bufs sync.Pool // of *[]byte, each len size
	size int
	log  zerolog.Logger
}

var _ Engine = (*goEngine)(nil)

// NewGo returns the goroutine Engine. bufSize is the size of each
// pooled copy buffer, the most one read moves; <= 0 means 64 KiB. log gets at
// most one Debug line per session. The Engine is safe for concurrent use.
func NewGo(bufSize int, log zerolog.Logger) Engine {
	if bufSize <= 0 {
		bufSize = defaultSpliceBuf
	}
	g := &goEngine{size: bufSize, log: log}
	g.bufs.New = g.newBuf
	return g
}

func (g *goEngine) newBuf() any {
	b := make([]byte, g.size)
	return &b
}

// getBuf borrows a copy buffer; putBuf gives it back.
func (g *goEngine) getBuf() *[]byte {
	bufsOut.Add(1)
	return g.bufs.Get().(*[]byte)
}

func (g *goEngine) putBuf(bp *[]byte) {
	g.bufs.Put(bp)
	bufsOut.Add(-1)
}

// Start implements Engine. Each direction runs on a goroutine of its own,
// started here with a shallow stack: an idle session costs two minimal
// goroutine stacks. The last copier to end closes both conns and calls done.
//
// Ending: EOF from one side half-closes the other (CloseWrite) and ends that
// direction only. Any other error in either direction closes both conns, which
// ends the other direction too. The error done gets is nil for EOF, a reset, a
// broken pipe or ENOTCONN (normal ways for a peer to leave); it is
// errSpliceIdle after IdleTimeout, and the wrapped cause otherwise (a write
// timeout, an unexpected socket error).
func (g *goEngine) Start(sess *Session, done Ender) {
	s := &gsess{
		g:        g,
		client:   sockio.WithRawIO(sess.Client),
		node:     sockio.WithRawIO(sess.Node),
		idle:     sess.IdleTimeout,
		wt:       sess.WriteTimeout,
		start:    time.Now(),
		ws:       sess.WebSocket,
		registry: sess.Registry,
		done:     done,
	}
	if s.wt <= 0 {
		s.wt = defaultSpliceWriteTimeout
	}
	s.wslack = min(s.wt/4, time.Second)
	s.up = half{src: s.client, dst: s.node}
	s.down = half{src: s.node, dst: s.client}

	// Deadlines left by the head and forward stages do not apply to a
	// session. Errors here (a conn already closed) come back from the first
	// read or write.
	var rd time.Time
	if s.idle > 0 {
		rd = s.start.Add(s.idle)
	}
	for _, c := range [2]net.Conn{s.client, s.node} {
		_ = c.SetDeadline(time.Time{})
		_ = c.SetReadDeadline(rd)
	}

	// The prefixes go first, from this goroutine, before either copier reads:
	// they are small (what a buffered reader held), so these writes do not
	// wait on the peers in practice, and WriteTimeout bounds them anyway.
	if s.up.err = s.send(&s.up, sess.ClientBuf); s.up.err == nil {
		if s.ws {
			s.track.Advance(sess.NodeBuf) // the node's first frames may follow its 101
		}
		s.down.err = s.send(&s.down, sess.NodeBuf)
	}
	if sess.Release != nil {
		sess.Release()
	}
	if s.up.err != nil || s.down.err != nil {
		s.closeBoth()
		done.SessionEnded(s.up.n, s.down.n, s.result())
		return
	}
	if s.registry != nil {
		s.registry.Register(s)
	}
	s.running.Store(2)
	go s.toNode(true)
	go s.toClient(true)
}

// finish is the last step of each copier: the second to get here closes
// both conns, unregisters the session and reports its end.
func (s *gsess) finish() {
	if s.running.Add(-1) != 0 {
		return
	}
	s.closeBoth()
	if s.registry != nil {
		s.registry.Unregister(s)
	}
	s.done.SessionEnded(s.up.n, s.down.n, s.result())
}

var _ pool.Evictor = (*gsess)(nil)

// Evict ends the session from outside: toClient writes a Close frame with
// code toward the client at the next frame boundary and closes the node
// side. It returns at once; later calls do nothing.
func (s *gsess) Evict(code uint16) {
	if s.evict.CompareAndSwap(0, uint32(code)) {
		_ = s.node.SetReadDeadline(time.Unix(1, 0)) // wakes toClient
	}
}

// gsess is one session on the goroutine engine, allocated once per Start.
// It is what the node's registry holds (pool.Evictor): Evict sets evict and
// wakes toClient with a past read deadline on node; pump and readDeadline
// notice it, and toClient, the client socket's only writer, finishes the
// frame in flight and writes the Close frame.
type gsess struct {
	pool.Registered
	g            *goEngine
	client, node net.Conn
	idle         time.Duration // Session.IdleTimeout; 0 = none
	wt           time.Duration // write timeout, > 0
	wslack       time.Duration // how stale a write deadline may get before it is re-armed
	start        time.Time     // monotonic base of every offset below

	// last is the offset from start of the last write that moved bytes, in
	// either direction; both copiers store it, the idle check reads it.
	last atomic.Int64
	// writing counts copiers inside a write: a slow reader draining a big
	// write is not idle (the write timeout bounds it instead).
	writing atomic.Int32
	closed  atomic.Bool
	running atomic.Int32 // copiers still running; the last calls done

	registry Registry // told of the session while it runs; may be nil
	done     Ender

	// evict is the Close code asked for by Evict; 0 while none.
	evict atomic.Uint32
	// told is the Close code tether wrote to the client; once set, the node
	// side is closed and toNode discards what the client still sends.
	told atomic.Uint32
	// clientShut is set when the client's stream ended (EOF) before the
	// node's: the node's end then answers it and tells the client nothing.
	clientShut atomic.Bool
	// linger is when a told client's linger ends (unix nanos); 0 before.
	linger atomic.Int64
	// track follows frame boundaries of node→client bytes when ws is set;
	// only toClient touches it.
	track wire.FrameTracker
	ws    bool

	up   half // client→node; only touched by toNode (and Start before it)
	down half // node→client; only touched by toClient
}

// half is one direction of a splice. Only its copier touches it while the
// session runs; finish reads it after both copiers ended.
type half struct {
	src, dst net.Conn
	n        int64         // bytes written to dst
	wdl      time.Duration // offset from start of the write deadline set on dst; 0 = none yet
	err      error         // why the direction ended; nil for EOF
}

// toNode copies client→node on its own goroutine. Once tether has told the
// client its session is over, it only drains the client until the client
// hangs up or closeLinger passes.
func (s *gsess) toNode(hot bool) {
	err := s.pump(&s.up, hot)
	if err == errGoIdle {
		go s.toNode(false)
		return
	}
	if err == io.EOF {
		s.clientShut.Store(true) // before the node can see it
		closeWrite(s.node)
		err = nil
	}
	s.up.err = err
	if err != nil {
		s.closeBoth()
	}
	s.finish()
}

// toClient copies node→client on its own goroutine, and is the only writer
// of the client socket once Start has written NodeBuf. It ends
// the client's side with a Close frame of tether's own, at a frame boundary,
// when the session is evicted (node down, shutdown) and when the node's
// stream ends without the node having sent a Close (the node died).
func (s *gsess) toClient(hot bool) {
	err := s.pump(&s.down, hot)
	if err == errGoIdle {
		go s.toClient(false)
		return
	}
	var code uint16
	// nodeFailed: the session ends because its node failed, seen here
	// once: evicted with 1012, or the node's WebSocket stream ended
	// without a Close.
	nodeFailed := errors.Is(err, errEvicting) && s.evict.Load() == uint32(pool.CloseServiceRestart)
	switch {
	case !s.ws:
		if err == io.EOF {
			closeWrite(s.client)
			err = nil
		}
	case errors.Is(err, errEvicting):
		if h := testHookEvicted; h != nil {
			h(s)
		}
		code = uint16(s.evict.Load())
		err = s.finishFrame()
	case err == io.EOF && s.track.SawClose():
		closeWrite(s.client) // the node closed the WebSocket itself
		err = nil
	case err == io.EOF && s.clientShut.Load():
		// The client ended its side first (no Close frame): the node's end
		// answers that, it is no node failure.
		closeWrite(s.client)
		err = nil
	case errors.Is(err, syscall.ECONNRESET) && s.clientShut.Load():
	case (err == io.EOF || errors.Is(err, syscall.ECONNRESET)) && nodeDied(s.ws, &s.track, s.clientShut.Load()):
		code, err = pool.CloseServiceRestart, nil
		nodeFailed = true
		if !s.track.AtBoundary() {
			err = errMidFrame
		}
	}
	if nodeFailed && s.registry != nil {
		s.registry.CountEviction() // a later Evict finds toClient done: not counted again
	}
	if code != 0 && err == nil {
		err = s.tellClient(code)
	}
	s.down.err = err
	if err != nil {
		s.closeBoth()
	}
	s.finish()
}

// finishFrame lets the frame in flight from the node reach the client, up to
// its last byte and no further, within evictGrace.
func (s *gsess) finishFrame() error {
	if s.track.AtBoundary() {
		return nil
	}
	if err := s.node.SetReadDeadline(time.Now().Add(evictGrace)); err != nil {
		return err
	}
	bp := s.g.getBuf()
	defer s.g.putBuf(bp)
	for !s.track.AtBoundary() {
		want := min(s.track.UntilBoundary(), uint64(len(*bp)))
		n, err := s.node.Read((*bp)[:want])
		if n > 0 {
			s.track.Advance((*bp)[:n])
			if werr := s.send(&s.down, (*bp)[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errMidFrame, err)
		}
	}
	return nil
}

// tellClient closes the node side, writes the Close frame with code to the
// client and half-closes it, then leaves toNode closeLinger to see the
// client answer and hang up.
func (s *gsess) tellClient(code uint16) error {
	s.told.Store(uint32(code))
	_ = s.node.Close()
	if err := s.send(&s.down, wire.CloseFrameFor(code)); err != nil {
		return err
	}
	closeWrite(s.client)
	end := time.Now().Add(closeLinger)
	s.linger.Store(end.UnixNano())
	return s.client.SetReadDeadline(end)
}

// pump is one direction's loop: wait until h.src is readable holding nothing,
// borrow a buffer, move what is there to h.dst, give the buffer back. It
// returns io.EOF at the end of h.src's stream (the caller half-closes
// h.dst), errGoIdle when its hot window passed, and the error otherwise.
// The loop stays flat and its frame small: an idle session's cost is mostly
// the stacks of the goroutines parked in it.
func (s *gsess) pump(h *half, hot bool) error {
	down := h == &s.down
	// hot: bytes just moved, so read again at once, holding the buffer. A
	// session starts hot: a TLS connection may hold whole records above its
	// socket (the client's first frames, read with its upgrade request),
	// which a readiness wait on the socket would not see.
	for {
		if down && s.evict.Load() != 0 {
			return errEvicting
		}
		if hot {
			// A busy session's next message usually follows within
			// milliseconds: a direct read with a short deadline costs one
			// system call where a readiness wait costs two. Past the hot
			// window the copier goes back to waiting with no buffer. A
			// told client's linger ends the window early.
			dl := time.Now().Add(sockio.HotWindow)
			if l := s.linger.Load(); l != 0 && l < dl.UnixNano() {
				dl = time.Unix(0, l)
			}
			if err := h.src.SetReadDeadline(dl); err != nil {
				return err
			}
		} else if err := sockio.WaitReadable(h.src); err != nil {
			if err = s.readDeadline(h, err); err != nil {
				return err
			}
			continue
		}
		bp := s.g.getBuf()
		n, err := h.src.Read(*bp)
		if n > 0 {
			if down && s.ws {
				s.track.Advance((*bp)[:n])
			}
			if werr := s.send(h, (*bp)[:n]); werr != nil && !(s.told.Load() != 0 && !down) {
				s.g.putBuf(bp)
				return werr
			}
		}
		s.g.putBuf(bp)
		if hot && n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			// Quiet now: back to the idle clock's deadline, and to waiting,
			// on a fresh goroutine (errGoIdle): this one's stack grew in
			// the TLS code and would stay that size for as long as the
			// session idles.
			if err := h.src.SetReadDeadline(s.idleDeadline()); err != nil {
				return err
			}
			return errGoIdle
		}
		// Hot after any read that moved bytes (a told client's too, until
		// its linger ends): a TLS source is waited on only after a read
		// timed out.
		hot = n > 0 && err == nil
		switch {
		case err == nil:
		case err == io.EOF:
			return io.EOF
		default:
			if err = s.readDeadline(h, err); err != nil {
				return err
			}
		}
	}
}

// idleDeadline is the read deadline a copier returns to after its hot
// window: the end of closeLinger once the client was told, else IdleTimeout
// after the last byte moved, or none.
func (s *gsess) idleDeadline() time.Time {
	if l := s.linger.Load(); l != 0 {
		return time.Unix(0, l)
	}
	if s.idle <= 0 {
		return time.Time{}
	}
	return s.start.Add(time.Duration(s.last.Load()) + s.idle)
}

// send writes all of p to h.dst under the write timeout. The deadline is
// re-armed only when it has gone stale by more than wslack, so a busy session
// does not reset the poller's timer on every write; each write is bounded by
// between wt-wslack and wt. It keeps the idle clock: writing is raised for
// the write and last is stored when it ends, before writing drops.
func (s *gsess) send(h *half, p []byte) error {
	if len(p) == 0 || (h == &s.up && s.told.Load() != 0) {
		return nil // the node side is closed: the client's last bytes go nowhere
	}
	now := time.Since(s.start)
	if want := now + s.wt; want-h.wdl > s.wslack {
		if err := h.dst.SetWriteDeadline(s.start.Add(want)); err != nil {
			return err
		}
		h.wdl = want
	}
	s.writing.Add(1)
	n, err := h.dst.Write(p)
	s.last.Store(int64(time.Since(s.start)))
	s.writing.Add(-1)
	h.n += int64(n)
	return err
}

// readDeadline decides what a read error means. A passed read deadline is
// the idle clock: if a byte moved in either direction within IdleTimeout the
// deadline moves to IdleTimeout after that byte (or after now, while the
// other copier is inside a write) and the copier waits again (nil), so read
// deadlines change at most once per IdleTimeout per direction, never per
// read. Otherwise the session was idle (errSpliceIdle). Any other error,
// including a deadline someone else set with IdleTimeout 0, is returned as is.
func (s *gsess) readDeadline(h *half, err error) error {
	if h == &s.down && s.evict.Load() != 0 {
		return errEvicting
	}
	if s.told.Load() != 0 || s.idle <= 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	now := time.Since(s.start)
	last := time.Duration(s.last.Load())
	if s.writing.Load() > 0 {
		last = now
	}
	if now-last >= s.idle {
		return errSpliceIdle
	}
	if err := h.src.SetReadDeadline(s.start.Add(last + s.idle)); err != nil {
		return err
	}
	if h == &s.down && s.evict.Load() != 0 {
		return errEvicting // Evict's wake-up may have come before this deadline
	}
	return nil
}

// closeBoth closes both conns once; later calls do nothing. Closing wakes a
// copier parked in sockio.WaitReadable or blocked in a write with net.ErrClosed.
func (s *gsess) closeBoth() {
	if s.closed.Swap(true) {
		return
	}
	_ = s.client.Close()
	_ = s.node.Close()
}

// result is the session's error for done, by the rules of result.
func (s *gsess) result() error {
	return result(s.g.log, uint16(s.told.Load()), s.up.err, s.down.err, s.up.n, s.down.n)
}

// closeWrite half-closes c after its source sent EOF, if c can. An error
// (the peer already gone: ENOTCONN) ends nothing: the other direction reports
// it if it matters.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// BufsOut returns how many copy buffers the engines have borrowed and not
// given back, across all engines: an idle session holds none.
func BufsOut() int64 { return bufsOut.Load() }
