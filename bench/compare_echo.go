package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"strconv"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/rs/zerolog"
)

// ScenarioWSEcho is the WebSocket throughput scenario of a comparison:
// Sessions echo WebSockets, each with one message in flight, so that
// messages per second are round trips through the target and back.
const ScenarioWSEcho = "ws-echo"

// runEcho drives ScenarioWSEcho: every session GETs / for the sticky
// cookie, opens one role=echo WebSocket carrying it, then sends
// MessageBytes messages and reads each back until the run ends. Latency
// is the round trip. The report's WS holds the round trips.
func runEcho(ctx context.Context, cfg LoadConfig, log zerolog.Logger) (*Report, error) {
	cfg.Scenario = ScenarioWS // the same limits and defaults
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	addr, _ := targetAddr(cfg.Target) // checked by Validate
	start := time.Now()
	r := &run{
		ctx:     ctx,
		cfg:     cfg,
		addr:    addr,
		log:     log,
		prefix:  strconv.FormatInt(start.UnixNano(), 36),
		start:   start,
		end:     start.Add(cfg.Duration),
		hardEnd: start.Add(cfg.Duration + cfg.Timeout + time.Second),
		httpLat: newLatencies(),
		wsLat:   newLatencies(),
	}
	workers := make([]*workerStats, 0, cfg.Sessions)
	var wg sync.WaitGroup
	for i := range cfg.Sessions {
		w := &echoWorker{sessionWorker{run: r, id: i, stats: newWorkerStats()}}
		workers = append(workers, w.stats)
		wg.Go(w.loop)
	}
	log.Info().Str("target", cfg.Target).Str("scenario", ScenarioWSEcho).Str("duration", cfg.Duration.String()).
		Int("sessions", cfg.Sessions).Msg("load started")
	wg.Wait()
	rep := r.report(time.Since(start), workers)
	rep.Scenario = ScenarioWSEcho
	log.Info().Int64("errors", rep.ErrorCount()).Int64("sticky_violations", rep.StickyViolations).Msg("load done")
	return rep, nil
}

// echoWorker is one session of ScenarioWSEcho. It borrows the cookie GET
// and the dial of the relay scenario's sessionWorker.
type echoWorker struct {
	sessionWorker
}

func (w *echoWorker) loop() {
	r := w.run
	w.hc = newHostClient(r)
	defer w.hc.CloseIdleConnections()
	w.dialer = &websocket.Dialer{
		HandshakeTimeout: r.cfg.Timeout,
		ReadBufferSize:   16 << 10,
		WriteBufferSize:  16 << 10,
	}
	for attempt := 0; r.running(); attempt++ {
		if !w.session(attempt) {
			r.pause()
		}
	}
}

// session runs one echo session until the run ends (true) or it fails.
func (w *echoWorker) session(attempt int) bool {
	r := w.run
	if !w.page() {
		return false
	}
	c := w.dial(r.prefix+"-"+strconv.Itoa(w.id)+"-"+strconv.Itoa(attempt), "echo")
	if c == nil {
		return false
	}
	defer w.hangUp(c)
	w.stats.node(w.stats.sticky.node).WSSessions++
	return w.echo(c)
}

// echo sends a message and reads it back, one in flight, until the run
// ends. Each message carries its sequence number, then pattern bytes.
func (w *echoWorker) echo(c *websocket.Conn) bool {
	r := w.run
	node := w.stats.node(w.stats.sticky.node)
	msg := make([]byte, r.cfg.MessageBytes)
	Pattern(msg[minMessageBytes:], minMessageBytes)
	for seq := uint64(0); r.running(); seq++ {
		binary.BigEndian.PutUint64(msg[8:], seq)
		sent := time.Now()
		_ = c.SetWriteDeadline(r.deadline())
		if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			w.failOp("ws_write", err)
			return false
		}
		_ = c.SetReadDeadline(r.deadline())
		kind, data, err := c.ReadMessage()
		if err != nil {
			w.failOp("ws_read", err)
			return false
		}
		took := time.Since(sent)
		if kind != websocket.BinaryMessage || !bytes.Equal(data, msg) {
			w.stats.fail("ws_payload")
			return false
		}
		r.wsLat.record(w.id, took)
		w.stats.wsOps++
		w.stats.wsBytes += int64(len(data))
		node.WSMessages++
	}
	return true
}
