package bench

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
)

// Held sessions: a population of long-lived co-browse sessions kept open
// through something that happens to the proxy (a hand-over to a new binary,
// a reload), each WebSocket sending numbered messages that the other role
// of its session checks. What the population proves is that no session was
// closed and no stream lost, doubled or reordered a message; what it
// measures is the delay each message saw, so a pause of the proxy shows as
// the largest delay of the messages sent during it.

// HeldConfig describes a population of held sessions.
type HeldConfig struct {
	// Addr is the proxy's address (host:port, loopback).
	Addr string
	// TLS dials wss:// (certificates not verified: a test proxy's own).
	TLS bool
	// Pairs is the number of co-browse sessions: a customer and an agent
	// WebSocket each, so 2×Pairs connections.
	Pairs int
	// Nodes are the node names put in the sticky cookie, in turn.
	Nodes []string
	// Interval is the time between two messages of one WebSocket; the
	// sends of the population are spread evenly over it.
	Interval time.Duration
	// Timeout bounds a dial with its handshake and every write (default 10s).
	Timeout time.Duration
	// Prefix names the sessions (session=<Prefix>-<i>), so populations on
	// one node do not meet.
	Prefix string
	// Dialers is how many sessions open at once (default 64).
	Dialers int
}

// heldMsgLen is a held message: sequence number, send time (nanoseconds
// since the population's start) and the sender's pair index.
const heldMsgLen = 24

// Held is a running population.
type Held struct {
	cfg   HeldConfig
	base  time.Time
	conns []*heldConn
	stop  chan struct{}
	sends sync.WaitGroup // the senders: each conn's only writer until Close
	reads sync.WaitGroup

	closed     atomic.Int64 // connections that ended before Close
	gaps       atomic.Int64 // messages missing in a stream (a number skipped)
	reordered  atomic.Int64 // a number at or below one already received
	foreign    atomic.Int64 // a message of another pair, or malformed
	received   atomic.Int64
	sent       atomic.Int64
	writeFails atomic.Int64

	mu       sync.Mutex
	firstErr error
	codes    map[int]int64 // Close codes of the connections the proxy or node closed
}

// heldConn is one WebSocket of a held session.
type heldConn struct {
	c    *websocket.Conn
	pair int
	role string
	next uint64 // the next sequence number it sends
	want uint64 // the next it expects from its peer (reader only)
	// maxDelay is the largest delay (ns) of a message received since the
	// last Mark; the reader writes it, Stats reads it.
	maxDelay atomic.Int64
	ended    atomic.Bool
}

// Hold opens cfg.Pairs sessions (agent first, so nothing the customer sends
// is queued for nobody) and starts their traffic. It fails if any session
// cannot open; what opened is closed then.
func Hold(ctx context.Context, cfg HeldConfig) (*Held, error) {
	if cfg.Pairs <= 0 || len(cfg.Nodes) == 0 || cfg.Interval <= 0 {
		return nil, errors.New("held sessions: need Pairs, Nodes and Interval")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Dialers <= 0 {
		cfg.Dialers = 64
	}
	h := &Held{cfg: cfg, base: time.Now(), conns: make([]*heldConn, 2*cfg.Pairs), stop: make(chan struct{})}
	next := make(chan int)
	var dialErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range cfg.Dialers {
		wg.Go(func() {
			for i := range next {
				if err := h.open(ctx, i); err != nil {
					mu.Lock()
					dialErr = cmpErr(dialErr, err)
					mu.Unlock()
				}
			}
		})
	}
feed:
	for i := range cfg.Pairs {
		mu.Lock()
		failed := dialErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break feed
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if dialErr == nil {
		dialErr = ctx.Err()
	}
	if dialErr != nil {
		h.Close()
		return nil, dialErr
	}
	for _, c := range h.conns {
		h.reads.Go(func() { h.read(c) })
	}
	for k := range heldSenders {
		h.sends.Go(func() { h.send(k) })
	}
	return h, nil
}

func cmpErr(old, err error) error {
	if old != nil {
		return old
	}
	return err
}

// open dials pair i's agent and customer.
func (h *Held) open(ctx context.Context, i int) error {
	cfg := h.cfg
	scheme := "ws"
	d := &websocket.Dialer{HandshakeTimeout: cfg.Timeout, ReadBufferSize: 1024, WriteBufferSize: 1024,
		NetDialContext: (&net.Dialer{Timeout: cfg.Timeout}).DialContext}
	if cfg.TLS {
		scheme = "wss"
		d.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	node := cfg.Nodes[i%len(cfg.Nodes)]
	hdr := http.Header{"Cookie": {"gcbSessionServer=" + node}}
	for k, role := range []string{"agent", "customer"} {
		url := scheme + "://" + cfg.Addr + "/cobrowse/ws?session=" + cfg.Prefix + "-" + strconv.Itoa(i) + "&role=" + role
		c, resp, err := d.DialContext(ctx, url, hdr)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			return fmt.Errorf("pair %d %s: %w", i, role, err)
		}
		h.conns[2*i+k] = &heldConn{c: c, pair: i, role: role, next: 1, want: 1}
	}
	return nil
}

// heldSenders is how many goroutines send for a population: each takes
// every heldSenders-th WebSocket in turn, spacing its sends over Interval,
// so a population of thousands costs a few goroutines, not one each.
const heldSenders = 16

// send writes the numbered messages of every k-th WebSocket (k = first, by
// heldSenders) until Close: one message each per Interval, spread evenly.
func (h *Held) send(first int) {
	var mine []*heldConn
	for i := first; i < len(h.conns); i += heldSenders {
		mine = append(mine, h.conns[i])
	}
	if len(mine) == 0 {
		return
	}
	step := h.cfg.Interval / time.Duration(len(mine))
	t := time.NewTimer(time.Duration(first) * step / heldSenders)
	defer t.Stop()
	var msg [heldMsgLen]byte
	for {
		for _, c := range mine {
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
			t.Reset(step)
			if c.ended.Load() {
				continue
			}
			binary.BigEndian.PutUint64(msg[0:], c.next)
			binary.BigEndian.PutUint64(msg[8:], uint64(time.Since(h.base)))
			binary.BigEndian.PutUint64(msg[16:], uint64(c.pair))
			c.c.SetWriteDeadline(time.Now().Add(h.cfg.Timeout))
			if err := c.c.WriteMessage(websocket.BinaryMessage, msg[:]); err != nil {
				select {
				case <-h.stop:
					return
				default:
				}
				c.ended.Store(true)
				h.writeFails.Add(1)
				h.fail(fmt.Errorf("pair %d %s: write %d: %w", c.pair, c.role, c.next, err))
				continue
			}
			c.next++
			h.sent.Add(1)
		}
	}
}

// read checks c's incoming stream: numbers in order, none missing.
func (h *Held) read(c *heldConn) {
	for {
		_, b, err := c.c.ReadMessage()
		if err != nil {
			select {
			case <-h.stop:
			default:
				if c.ended.CompareAndSwap(false, true) {
					h.closed.Add(1)
					code := -1 // no Close frame
					if ce, ok := errors.AsType[*websocket.CloseError](err); ok {
						code = ce.Code
					}
					h.mu.Lock()
					if h.codes == nil {
						h.codes = map[int]int64{}
					}
					h.codes[code]++
					h.mu.Unlock()
					h.fail(fmt.Errorf("pair %d %s: closed: %w", c.pair, c.role, err))
				}
			}
			return
		}
		if len(b) != heldMsgLen || int(binary.BigEndian.Uint64(b[16:])) != c.pair {
			h.foreign.Add(1)
			h.fail(fmt.Errorf("pair %d %s: foreign or malformed message (%d bytes)", c.pair, c.role, len(b)))
			continue
		}
		seq := binary.BigEndian.Uint64(b)
		switch {
		case seq == c.want:
		case seq > c.want:
			h.gaps.Add(int64(seq - c.want))
			h.fail(fmt.Errorf("pair %d %s: got %d, want %d", c.pair, c.role, seq, c.want))
		default:
			h.reordered.Add(1)
			h.fail(fmt.Errorf("pair %d %s: got %d again or late (want %d)", c.pair, c.role, seq, c.want))
			continue
		}
		c.want = seq + 1
		h.received.Add(1)
		delay := int64(time.Since(h.base)) - int64(binary.BigEndian.Uint64(b[8:]))
		for {
			old := c.maxDelay.Load()
			if delay <= old || c.maxDelay.CompareAndSwap(old, delay) {
				break
			}
		}
	}
}

func (h *Held) fail(err error) {
	h.mu.Lock()
	if h.firstErr == nil {
		h.firstErr = err
	}
	h.mu.Unlock()
}

// Mark starts a window: the per-connection largest delays restart from 0.
func (h *Held) Mark() {
	for _, c := range h.conns {
		c.maxDelay.Store(0)
	}
}

// HeldStats is what a population saw.
type HeldStats struct {
	Conns      int   // WebSockets held (2 per pair)
	Closed     int64 // ended before Close: must be 0
	Gaps       int64 // messages missing from a stream
	Reordered  int64 // messages repeated or out of order
	Foreign    int64 // messages of another session, or malformed
	WriteFails int64
	Sent       int64
	Received   int64
	// Pause is, over the connections, the distribution of the largest
	// delay a message to each saw since the last Mark.
	PauseP50, PauseP99, PauseMax time.Duration
	FirstErr                     error
	// CloseCodes counts the connections closed before Close by their
	// Close code (-1: closed without a Close frame).
	CloseCodes map[int]int64
}

// Clean reports whether nothing was closed, lost, doubled or misrouted.
func (s HeldStats) Clean() bool {
	return s.Closed == 0 && s.Gaps == 0 && s.Reordered == 0 && s.Foreign == 0 && s.WriteFails == 0
}

func (s HeldStats) String() string {
	return fmt.Sprintf("conns=%d closed=%d gaps=%d reordered=%d foreign=%d write_fails=%d sent=%d received=%d pause p50=%v p99=%v max=%v",
		s.Conns, s.Closed, s.Gaps, s.Reordered, s.Foreign, s.WriteFails, s.Sent, s.Received,
		s.PauseP50.Round(time.Microsecond), s.PauseP99.Round(time.Microsecond), s.PauseMax.Round(time.Microsecond))
}

// Stats reports the population now.
func (h *Held) Stats() HeldStats {
	s := HeldStats{Conns: len(h.conns), Closed: h.closed.Load(), Gaps: h.gaps.Load(), Reordered: h.reordered.Load(),
		Foreign: h.foreign.Load(), WriteFails: h.writeFails.Load(), Sent: h.sent.Load(), Received: h.received.Load()}
	d := make([]int64, 0, len(h.conns))
	for _, c := range h.conns {
		if c != nil {
			d = append(d, c.maxDelay.Load())
		}
	}
	if len(d) > 0 {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		s.PauseP50 = time.Duration(d[len(d)/2])
		s.PauseP99 = time.Duration(d[min(len(d)-1, len(d)*99/100)])
		s.PauseMax = time.Duration(d[len(d)-1])
	}
	h.mu.Lock()
	s.FirstErr = h.firstErr
	if len(h.codes) > 0 {
		s.CloseCodes = maps.Clone(h.codes)
	}
	h.mu.Unlock()
	return s
}

// Received is how many messages arrived in order so far.
func (h *Held) Received() int64 { return h.received.Load() }

// Close stops the traffic, closes every WebSocket with a Close frame and
// waits for the readers and senders to end (bounded by the write timeout).
// Close must not run concurrently with itself.
func (h *Held) Close() {
	select {
	case <-h.stop:
		return
	default:
	}
	close(h.stop)
	h.sends.Wait() // bounded: a write has cfg.Timeout
	for _, c := range h.conns {
		if c == nil {
			continue
		}
		c.c.SetWriteDeadline(time.Now().Add(time.Second))
		c.c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		c.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	}
	done := make(chan struct{})
	go func() { h.reads.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	for _, c := range h.conns {
		if c != nil {
			c.c.Close()
		}
	}
	<-done
}
