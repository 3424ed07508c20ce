package splice

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/sockio"
	"github.com/tether-lb/tether/proxy/internal/wire"
)

// Engine joins a client connection and a node connection after a 101.
// NewGo runs every session on goroutines; NewLoops runs plain TCP sessions
// on epoll loops and hands the others to a NewGo engine. The server picks one
// at start (--splice-loops).
type Engine interface {
	// Start copies both ways until both directions end, then closes both
	// conns. It returns once the session's bytes already read (ClientBuf,
	// NodeBuf) are written; done.SessionEnded is called exactly once, from
	// one of the session's own goroutines, when the session is over, with
	// the byte counts for the access log.
	Start(s *Session, done Ender)
}

// Ender receives the end of a session: bytes copied each way and why it
// ended (nil for a normal close by either peer). It is an interface, not a
// func, so the record the caller already keeps per session is the callback:
// no closure per session.
type Ender interface {
	SessionEnded(toNode, toClient int64, err error)
}

// EndFunc is a function as an Ender.
type EndFunc func(toNode, toClient int64, err error)

// SessionEnded implements Ender.
func (f EndFunc) SessionEnded(toNode, toClient int64, err error) { f(toNode, toClient, err) }

// Session is one upgraded connection pair handed to an Engine. The engine
// owns both conns from Start on: it sets their deadlines and closes them.
type Session struct {
	// Client is the client's connection; Node is the node's. Both required.
	Client, Node net.Conn

	// ClientBuf holds client bytes already read past the request head; they
	// reach the node before anything else. NodeBuf holds node bytes already
	// read past the 101 head; they reach the client before anything else.
	// Either may be nil. Start writes both before it copies anything else and
	// keeps no reference to them afterwards; until then (see Release) or, with
	// Release nil, until Start returns, the caller must not reuse them.
	ClientBuf, NodeBuf []byte

	// Release, if non-nil, is called exactly once, from the goroutine that
	// called Start, as soon as ClientBuf and NodeBuf have been written (or
	// the session ended first): a caller whose buffers live in pooled
	// readers can give them back then. The proxy package leaves it nil: it
	// copies the few bytes out of its readers (takeBuffered) and gives the
	// readers back before Start.
	Release func()

	// IdleTimeout ends the session when no byte has moved in either
	// direction for this long. 0 means none.
	IdleTimeout time.Duration

	// WriteTimeout bounds each write to a peer, so a peer that stops reading
	// ends the session. 0 means defaultSpliceWriteTimeout (30s).
	WriteTimeout time.Duration

	// WebSocket says the node→client bytes are WebSocket frames: tether then
	// tracks their boundaries and ends the client's side with a Close frame
	// of its own when the session is evicted or the node's stream ends
	// without a Close. Without it the splice is a plain byte pipe and an
	// evicted session is simply closed.
	WebSocket bool

	// Detached is set by an Engine whose Start took both descriptors out of
	// the Go conns (and closed those): the caller may then drop its
	// references to them.
	Detached bool

	// Registry, if non-nil, is told of the session for its lifetime so it
	// can end it from outside (the node going down): Register when the
	// session starts, Unregister when it ends.
	Registry Registry
}

// Registry is where a session registers to be ended from outside; a
// *pool.Node is one.
type Registry interface {
	Register(pool.Evictor)
	Unregister(pool.Evictor)
	// CountEviction counts a session that ended because its node failed:
	// evicted with 1012 (the node was marked down), or its WebSocket
	// stream from the node ended without a Close (the node died). A
	// session counts itself once, whichever of the two came first.
	CountEviction()
}

var _ Registry = (*pool.Node)(nil)

const (
	// defaultSpliceBuf is the copy buffer size when NewGo or NewLoops gets
	// bufSize <= 0. Buffers are borrowed only while bytes move, so the size
	// costs nothing per idle session, and a larger buffer moves a bulk
	// transfer in fewer system calls (BenchmarkLoopSpliceThroughput64K;
	// BENCHMARKS.md). The server passes its own copy buffer size (32 KiB),
	// shared with request and answer bodies.
	defaultSpliceBuf = 64 << 10
	// defaultSpliceWriteTimeout is Session.WriteTimeout's zero value.
	defaultSpliceWriteTimeout = 30 * time.Second
)

// errLoopClosed ends the sessions still running when the Loops closes,
// and those started after.
var errLoopClosed = errors.New("proxy: splice loop closed")

// testHookEvicted, set by tests only, runs once an engine has taken an
// eviction (the loop its Evict command; the goroutine engine's toClient its
// wake-up): node bytes that arrive after it see the eviction.
var testHookEvicted func(pool.Evictor)

// errGoIdle is pump's word that its hot window passed: the copier hands its
// direction to a fresh goroutine, which waits with a minimal stack.
var errGoIdle = errors.New("proxy: copier going idle")

// errSpliceIdle ends a session in which no byte moved for Session.IdleTimeout.
var errSpliceIdle = errors.New("proxy: splice idle timeout")

// errEvicting stops the node→client copier when the session is being ended
// from outside; errMidFrame when the node's stream ended inside a frame, so
// no Close frame could be placed at a boundary.
var (
	errEvicting = errors.New("proxy: session evicted")
	errMidFrame = errors.New("proxy: node stream ended inside a frame")
)

const (
	// evictGrace bounds how long an evicted session waits for the node to
	// finish the frame in flight before its Close frame is written.
	evictGrace = 500 * time.Millisecond
	// closeLinger bounds how long tether waits for a told client to answer
	// its Close and hang up before closing the connection itself.
	closeLinger = 2 * time.Second
)

// The session rules both engines follow. An engine moves bytes and notices
// events (an end of stream, a reset, an eviction, a clock running out); what
// such an event means for the session, and what the session's Ender and log
// get at its end, is decided here.

// nodeDied reports whether the end of the node's stream (EOF, or a reset)
// means the node failed, so that the client is told 1012 and the session is
// counted as an eviction: a WebSocket session whose node sent no Close frame
// and whose client had not ended its own side first (the node's end then
// answers the client's).
func nodeDied(ws bool, track *wire.FrameTracker, clientShut bool) bool {
	return ws && !track.SawClose() && !clientShut
}

// result is what a session's Ender gets once both directions ended: the
// toldError when tether wrote a Close frame of its own (told), else the
// first error that is not a normal way for a peer to leave, wrapped with
// its direction (node→client first). Normal endings give nil and one Debug
// line; up and down are nil for a direction that ended by EOF.
func result(log zerolog.Logger, told uint16, up, down error, bytesIn, bytesOut int64) error {
	if told != 0 {
		return &toldError{code: told}
	}
	if down != nil && !sockio.PeerGone(down) {
		return wrapSplice("to client", down)
	}
	if up != nil && !sockio.PeerGone(up) {
		return wrapSplice("to node", up)
	}
	for _, err := range [2]error{down, up} {
		if err != nil && !errors.Is(err, net.ErrClosed) {
			log.Debug().Err(err).Int64("bytes_in", bytesIn).Int64("bytes_out", bytesOut).
				Msg("splice ended by peer")
			break
		}
	}
	return nil
}

// toldError is the session result when tether ended the session with a
// Close frame of its own: the access log says which.
type toldError struct{ code uint16 }

func (e *toldError) Error() string {
	if e.code == pool.CloseServiceRestart {
		return "client told 1012 (node down)"
	}
	return fmt.Sprintf("client told %d", e.code)
}

// wrapSplice names the direction of an error, except for the errors that
// say themselves why the session ended.
func wrapSplice(dir string, err error) error {
	if err == errSpliceIdle || err == errLoopClosed {
		return err
	}
	return fmt.Errorf("splice %s: %w", dir, err)
}
