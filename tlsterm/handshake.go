package tlsterm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"
)

var (
	// ErrPlainHTTP is a client speaking plain HTTP to the TLS port: its first
	// byte is a letter, as an HTTP method starts, where a TLS handshake
	// record starts with 0x16. The raw conn is left open, its deadline
	// cleared, for proxy to answer 400 in plain text and close it.
	ErrPlainHTTP = errors.New("tlsterm: plain HTTP on the TLS port")
	// ErrNotTLS is a client whose first bytes are neither a TLS handshake
	// record nor HTTP.
	ErrNotTLS = errors.New("tlsterm: not a TLS handshake")
	// ErrBusy is a handshake that found no free slot (MaxHandshakes) within
	// its HandshakeTimeout.
	ErrBusy = errors.New("tlsterm: too many handshakes in progress")
)

const (
	recordHeaderLen     = 5
	recordTypeHandshake = 0x16
	maxPlaintext        = 16384 // largest TLS record payload
)

// Handshaker runs server handshakes in the caller's goroutine, each under
// HandshakeTimeout, with at most MaxHandshakes computing at once. Safe for
// concurrent use; it owns no goroutine.
//
// A slot covers the server's crypto only: it is taken once the client's
// first record (the ClientHello) has fully arrived and given back when
// crypto/tls first waits for the client again, its first flight written. A
// client that sends nothing, or stalls before its Finished, holds none; the
// cap bounds the CPU a handshake flood takes from established sessions
// without bounding handshake throughput by round-trip times.
type Handshaker struct {
	tlsCfg  *tls.Config
	timeout time.Duration
	slots   chan struct{} // nil: no cap

	inFlight atomic.Int64 // holding a slot
	waiting  atomic.Int64 // waiting for one
	done     atomic.Uint64
	resumed  atomic.Uint64
	failed   atomic.Uint64
	busy     atomic.Uint64
	plain    atomic.Uint64
}

// HandshakeStats are a Handshaker's counters since it was built, for
// /metrics and /status.
type HandshakeStats struct {
	Done      uint64 // completed, resumed ones included
	Resumed   uint64 // completed from a session ticket
	Failed    uint64 // failed after the first record (timeouts, alerts, resets)
	Busy      uint64 // gave up waiting for a slot (ErrBusy)
	PlainHTTP uint64 // ErrPlainHTTP
	InFlight  int64  // holding a slot (computing) now
	Waiting   int64  // waiting for a slot now
}

// NewHandshaker builds a Handshaker serving tlsCfg (Certs.ServerConfig) with
// cfg's HandshakeTimeout and MaxHandshakes, defaults applied.
func NewHandshaker(cfg *Config, tlsCfg *tls.Config) *Handshaker {
	c := *cfg
	c.SetDefaults()
	h := &Handshaker{tlsCfg: tlsCfg, timeout: c.HandshakeTimeout}
	if c.MaxHandshakes > 0 {
		h.slots = make(chan struct{}, c.MaxHandshakes)
	}
	return h
}

// Stats reads the counters; each is atomic, the set is not a snapshot.
func (h *Handshaker) Stats() HandshakeStats {
	return HandshakeStats{
		Done:      h.done.Load(),
		Resumed:   h.resumed.Load(),
		Failed:    h.failed.Load(),
		Busy:      h.busy.Load(),
		PlainHTTP: h.plain.Load(),
		InFlight:  h.inFlight.Load(),
		Waiting:   h.waiting.Load(),
	}
}

// Handshake runs a server handshake on raw in the caller's goroutine and
// returns the *tls.Conn, its deadline cleared. Call it from the connection's
// goroutine, never from the accept loop.
//
// The whole of it, waiting for a slot included, is bounded by
// HandshakeTimeout (raw's deadline); ctx ends the slot wait and the handshake
// proper, not the first read (close raw to end that). It first reads the client's
// first record without a slot: a client that sends nothing, or sends plain
// HTTP (ErrPlainHTTP), never takes one. The record is then replayed to
// crypto/tls through a thin wrapper, which also gives the slot back at the
// first read from raw: (*tls.Conn).NetConn returns that wrapper, whose
// NetConn method returns raw.
//
// On error Handshake does not close raw (ctx's end may have): the caller
// closes it, after answering ErrPlainHTTP.
func (h *Handshaker) Handshake(ctx context.Context, raw net.Conn) (*tls.Conn, error) {
	return h.handshake(ctx, raw, h.timeout)
}

// handshake is Handshake with the timeout as a parameter, for tests.
func (h *Handshaker) handshake(ctx context.Context, raw net.Conn, timeout time.Duration) (*tls.Conn, error) {
	deadline := time.Now().Add(timeout)
	if err := raw.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	first, err := readFirstRecord(raw)
	if err != nil {
		if errors.Is(err, ErrPlainHTTP) {
			h.plain.Add(1)
			_ = raw.SetDeadline(time.Time{})
		}
		return nil, err
	}
	if err := h.acquire(ctx, deadline); err != nil {
		return nil, err
	}
	rc := &replayConn{Conn: raw, pending: first, slot: h}
	conn := tls.Server(rc, h.tlsCfg)
	err = conn.HandshakeContext(ctx)
	rc.releaseSlot()
	if err != nil {
		h.failed.Add(1)
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		h.failed.Add(1)
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	h.done.Add(1)
	if conn.ConnectionState().DidResume {
		h.resumed.Add(1)
	}
	return conn, nil
}

// acquire takes a handshake slot, waiting until deadline or ctx's end.
func (h *Handshaker) acquire(ctx context.Context, deadline time.Time) error {
	if h.slots == nil {
		h.inFlight.Add(1)
		return nil
	}
	select {
	case h.slots <- struct{}{}:
		h.inFlight.Add(1)
		return nil
	default:
	}
	h.waiting.Add(1)
	defer h.waiting.Add(-1)
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		h.inFlight.Add(1)
		return nil
	case <-t.C:
		h.busy.Add(1)
		return fmt.Errorf("tls handshake: %w", ErrBusy)
	case <-ctx.Done():
		return fmt.Errorf("tls handshake: %w", context.Cause(ctx))
	}
}

// release gives back the slot acquire took.
func (h *Handshaker) release() {
	h.inFlight.Add(-1)
	if h.slots != nil {
		<-h.slots
	}
}

// readFirstRecord reads the client's first TLS record whole (a ClientHello
// is one record: a few hundred bytes, about 1.8 KiB with a post-quantum key
// share) and returns it, header included, for replay. A first byte that is a
// letter is ErrPlainHTTP; anything else but a handshake record is ErrNotTLS.
// A record longer than TLS allows is returned as its header alone, for
// crypto/tls to reject with the right alert.
func readFirstRecord(raw net.Conn) ([]byte, error) {
	var hdr [recordHeaderLen]byte
	n, err := raw.Read(hdr[:])
	for n == 0 && err == nil {
		n, err = raw.Read(hdr[:])
	}
	if n == 0 {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	switch b := hdr[0]; {
	case b == recordTypeHandshake:
	case b >= 'A' && b <= 'Z', b >= 'a' && b <= 'z':
		return nil, ErrPlainHTTP
	default:
		return nil, fmt.Errorf("%w: first byte %#02x", ErrNotTLS, b)
	}
	if _, err := io.ReadFull(raw, hdr[n:]); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	size := int(hdr[3])<<8 | int(hdr[4])
	if size > maxPlaintext {
		return hdr[:], nil
	}
	rec := make([]byte, recordHeaderLen+size)
	copy(rec, hdr[:])
	if _, err := io.ReadFull(raw, rec[recordHeaderLen:]); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return rec, nil
}

// replayConn gives crypto/tls the first record Handshake read ahead, then
// reads raw; before its first read from raw, crypto/tls has done the
// server's crypto for the first flight and written it, so that read gives the
// handshake slot back. pending and slot are only touched by Read, which
// crypto/tls calls from the handshake's goroutine and later under its input
// lock, and by Handshake after the handshake; pending is nil once replayed,
// so the record's memory goes with it.
//
// Reads from raw go straight through: crypto/tls reads as much as the
// socket holds, so several records that arrived together cost one system
// call. It may then hold whole records above the socket; see Raw for when
// the socket's readability is the connection's.
type replayConn struct {
	net.Conn
	pending []byte
	slot    *Handshaker // holding one of its slots; nil once given back
}

var _ net.Conn = (*replayConn)(nil)

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	c.releaseSlot()
	return c.Conn.Read(p)
}

// Raw returns the socket under a TLS connection, for readiness waits. The
// socket's readability is the connection's only once a (*tls.Conn).Read
// failed on the socket's read deadline: crypto/tls reads the socket only
// when the records it holds are used up, so it then holds at most part of a
// record, whose rest is still to come over the socket. After a Read that
// returned data, or right after the handshake, whole records may wait above
// the socket: read (with a short deadline) before waiting on Raw. For other
// connections it returns c itself.
func Raw(c net.Conn) net.Conn {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return c
	}
	if rc, ok := tc.NetConn().(*replayConn); ok {
		return rc.Conn
	}
	return tc.NetConn()
}

// releaseSlot gives the handshake slot back, once.
func (c *replayConn) releaseSlot() {
	if c.slot != nil {
		c.slot.release()
		c.slot = nil
	}
}

// NetConn returns the raw conn, as (*tls.Conn).NetConn does, for callers
// that need the socket itself (readiness waits, CloseWrite).
func (c *replayConn) NetConn() net.Conn { return c.Conn }
