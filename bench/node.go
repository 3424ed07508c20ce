package bench

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// Defaults and limits of the fake node.
const (
	// DefaultCookie is the stickiness cookie a co-browse node sets.
	DefaultCookie = "gcbSessionServer"
	// DefaultPollWait is how long a long poll waits for a message.
	DefaultPollWait = 25 * time.Second
	// MaxResourceBytes caps GET /cobrowse/resource?bytes=N; larger N is a 400.
	MaxResourceBytes = 1 << 30
	// MaxMessageBytes caps one relayed message: a WebSocket message (the read
	// limit) or the body of POST /cobrowse/send (413 above it).
	MaxMessageBytes = 64 << 20
)

// Paths served by the node.
const (
	PathHealth      = "/cobrowse/health"
	PathCtlHealth   = "/cobrowse/_ctl/health"
	PathWS          = "/cobrowse/ws"
	PathPoll        = "/cobrowse/poll"
	PathSend        = "/cobrowse/send"
	PathResource    = "/cobrowse/resource"
	PathUpload      = "/cobrowse/upload"
	PathEchoHeaders = "/cobrowse/echo-headers"
	PathPage        = "/cobrowse/page"
)

// Response headers that the harness reads.
const (
	HeaderNode         = "X-Node"
	HeaderSessionEnded = "X-Session-Ended"
)

// NodeConfig configures a fake co-browse node.
type NodeConfig struct {
	// Name is the node's application name, e.g. "CB_Server_1". It is sent as
	// X-Node on every response and is the value of the cookie the node sets.
	// "" means "node".
	Name string
	// Cookie is the stickiness cookie name; "" means DefaultCookie.
	Cookie string
	// PollWait is how long GET /cobrowse/poll waits for a message before it
	// answers 204; 0 (or negative) means DefaultPollWait.
	PollWait time.Duration
}

// NodeStats are a node's counters since NewNode. WSOpen and Sessions are
// current values; the others only grow.
type NodeStats struct {
	Requests     int64 // HTTP requests, WebSocket upgrades included
	Sessions409  int64 // requests answered 409 for a cookie naming another node
	WSOpen       int64 // WebSockets open now
	WSTotal      int64 // WebSockets accepted
	WSMessages   int64 // messages read from WebSockets (relay and echo)
	Relayed      int64 // messages handed to the other role (WebSocket write or poll answer)
	Dropped      int64 // messages dropped because the other role's queue stayed full
	Polls        int64 // long polls
	PollTimeouts int64 // long polls answered 204
	Sends        int64 // POST /cobrowse/send accepted
	Sessions     int64 // session states held now
}

// nodeCounters are the atomic counters behind NodeStats.
type nodeCounters struct {
	requests, sessions409, wsOpen, wsTotal, wsMessages, relayed, dropped atomic.Int64
	polls, pollTimeouts, sends                                           atomic.Int64
}

// Node is a fake co-browse node: the backend that tether balances in tests,
// demos and benchmarks. It speaks the protocol of docs/ARCHITECTURE.md. Create it with
// NewNode, run it with Serve, stop it with Close. Its methods are safe for
// concurrent use.
type Node struct {
	name      string
	nameBytes []byte
	dotName   []byte // "." + name: the suffix of the "<anything>.<name>" cookie form
	cookie    string
	setCookie string // the Set-Cookie value naming this node
	pollWait  time.Duration
	log       zerolog.Logger

	srv      *fasthttp.Server
	upgrader websocket.FastHTTPUpgrader
	sessions sessionTable
	healthy  atomic.Bool
	stats    nodeCounters
	done     chan struct{} // closed by Close: wakes long polls and relays

	mu     sync.Mutex
	closed bool                         // guarded by mu
	lns    []net.Listener               // guarded by mu
	conns  map[net.Conn]struct{}        // guarded by mu; HTTP connections not hijacked
	wss    map[*websocket.Conn]struct{} // guarded by mu; open WebSockets
	wg     sync.WaitGroup               // Serve calls and WebSocket handlers; Add under mu while !closed
	once   sync.Once                    // runs the body of Close
}

// NewNode builds a node from cfg. It starts nothing: call Serve.
func NewNode(cfg NodeConfig, log zerolog.Logger) *Node {
	if cfg.Name == "" {
		cfg.Name = "node"
	}
	if cfg.Cookie == "" {
		cfg.Cookie = DefaultCookie
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = DefaultPollWait
	}
	n := &Node{
		name:      cfg.Name,
		nameBytes: []byte(cfg.Name),
		dotName:   []byte("." + cfg.Name),
		cookie:    cfg.Cookie,
		setCookie: cfg.Cookie + "=" + cfg.Name + "; Path=/",
		pollWait:  cfg.PollWait,
		log:       log.With().Str("node", cfg.Name).Logger(),
		done:      make(chan struct{}),
		conns:     make(map[net.Conn]struct{}),
		wss:       make(map[*websocket.Conn]struct{}),
	}
	n.healthy.Store(true)
	n.sessions.init(sessionIdleTTL(cfg.PollWait))
	n.upgrader = websocket.FastHTTPUpgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   32 << 10,
		WriteBufferSize:  32 << 10,
		CheckOrigin:      allowAnyOrigin,
		Error:            n.upgradeError,
	}
	n.srv = &fasthttp.Server{
		Handler:               n.handle,
		Name:                  "tether-bench-node",
		NoDefaultServerHeader: true,
		ReadBufferSize:        64 << 10, // request heads up to 64 KiB
		WriteBufferSize:       32 << 10,
		// Bodies above this stream through RequestBodyStream instead of
		// being read into memory before the handler runs.
		MaxRequestBodySize:           64 << 10,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		IdleTimeout:                  2 * time.Minute,
		// fasthttp's worker cleaner notices the end of Serve only at its
		// next tick: this bounds how long it outlives Close.
		MaxIdleWorkerDuration: time.Second,
		ConnState:             n.connState,
		ErrorHandler:          n.serveBadRequest,
		// The WebSocket handlers own their connections: closing one (from
		// Close, or when its reader ends) must reach the socket.
		KeepHijackedConns: true,
		Logger:            fasthttpLogger{log: n.log},
	}
	return n
}

// Name is the node's name as sent in X-Node.
func (n *Node) Name() string { return n.name }

// Serve accepts connections on ln until Close. It returns nil after Close,
// or the listener's error. Serve may be called for several listeners.
func (n *Node) Serve(ln net.Listener) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	n.lns = append(n.lns, ln)
	n.wg.Add(1)
	n.mu.Unlock()
	defer n.wg.Done()

	err := n.srv.Serve(ln)
	if n.isClosed() {
		return nil
	}
	if err != nil {
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Close stops listening and cuts every connection, WebSockets included,
// without a WebSocket Close frame: to its clients (and to tether) the node
// dies. It wakes pending long polls and waits for the node's goroutines.
// Close is idempotent.
func (n *Node) Close() error {
	n.once.Do(n.close)
	return nil
}

func (n *Node) close() {
	n.mu.Lock()
	n.closed = true
	close(n.done)
	lns := n.lns
	conns := make([]net.Conn, 0, len(n.conns))
	for c := range n.conns {
		conns = append(conns, c)
	}
	wss := make([]*websocket.Conn, 0, len(n.wss))
	for c := range n.wss {
		wss = append(wss, c)
	}
	n.mu.Unlock()

	for _, ln := range lns {
		_ = ln.Close()
	}
	for _, c := range conns {
		_ = c.Close()
	}
	for _, c := range wss {
		_ = c.Close()
	}
	// Shutdown waits until fasthttp has let go of every connection; the
	// ones we closed above end at their next read or write.
	_ = n.srv.Shutdown()
	n.wg.Wait()
	n.log.Debug().Msg("node closed")
}

func (n *Node) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// SetHealthy switches GET /cobrowse/health between 200 (up) and 503.
func (n *Node) SetHealthy(up bool) { n.healthy.Store(up) }

// Stats returns a snapshot of the node's counters.
func (n *Node) Stats() NodeStats {
	return NodeStats{
		Requests:     n.stats.requests.Load(),
		Sessions409:  n.stats.sessions409.Load(),
		WSOpen:       n.stats.wsOpen.Load(),
		WSTotal:      n.stats.wsTotal.Load(),
		WSMessages:   n.stats.wsMessages.Load(),
		Relayed:      n.stats.relayed.Load(),
		Dropped:      n.stats.dropped.Load(),
		Polls:        n.stats.polls.Load(),
		PollTimeouts: n.stats.pollTimeouts.Load(),
		Sends:        n.stats.sends.Load(),
		Sessions:     int64(n.sessions.len()),
	}
}

// connState tracks the HTTP connections, so that Close can cut them.
func (n *Node) connState(c net.Conn, st fasthttp.ConnState) {
	switch st {
	case fasthttp.StateNew:
		n.mu.Lock()
		if n.closed {
			n.mu.Unlock()
			_ = c.Close()
			return
		}
		n.conns[c] = struct{}{}
		n.mu.Unlock()
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		n.mu.Lock()
		delete(n.conns, c)
		n.mu.Unlock()
	}
}

// pageHTML is a small co-browse page for browser tests: it opens an echo
// WebSocket on the same origin (wss under https), which carries the
// stickiness cookie the page's answer set, sends one message and shows the
// echo, and the node that served the page, in the DOM.
const pageHTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>co-browse</title></head><body>
<p>page from <span id="node">%s</span></p>
<p id="result">pending</p>
<script>
"use strict";
const out = document.getElementById("result");
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/cobrowse/ws?session=browser&role=echo");
ws.onopen = () => ws.send("hello from the browser");
ws.onmessage = (e) => { out.textContent = "echo: " + e.data; ws.close(); };
ws.onerror = () => { out.textContent = "error"; };
</script></body></html>
`

// servePage answers PathPage with pageHTML.
func (n *Node) servePage(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetBodyString(fmt.Sprintf(pageHTML, n.name))
}

// handle is the node's request handler: X-Node, and this node's cookie for
// a request without one (every answer, the health endpoints' included),
// then the health endpoints, then the rest of the cookie rule, then the
// co-browse endpoints.
func (n *Node) handle(ctx *fasthttp.RequestCtx) {
	n.stats.requests.Add(1)
	ctx.Response.Header.SetBytesV(HeaderNode, n.nameBytes)
	if e := n.log.Debug(); e.Enabled() {
		e.Bytes("method", ctx.Method()).Bytes("path", ctx.Path()).Str("remote", ctx.RemoteAddr().String()).Msg("request")
	}
	cookie := ctx.Request.Header.Cookie(n.cookie)
	if len(cookie) == 0 {
		ctx.Response.Header.Set("Set-Cookie", n.setCookie)
	}

	switch string(ctx.Path()) {
	case PathHealth:
		n.serveHealth(ctx)
		return
	case PathCtlHealth:
		n.serveCtlHealth(ctx)
		return
	}
	if !n.checkCookie(ctx, cookie) {
		return
	}
	switch string(ctx.Path()) {
	case PathWS:
		n.serveWS(ctx)
	case PathPoll:
		n.servePoll(ctx)
	case PathSend:
		n.serveSend(ctx)
	case PathResource:
		n.serveResource(ctx)
	case PathUpload:
		n.serveUpload(ctx)
	case PathEchoHeaders:
		n.serveEchoHeaders(ctx)
	case PathPage:
		n.servePage(ctx)
	default:
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("co-browse node " + n.name + "\n")
	}
}

// checkCookie applies the stickiness rule to the request's cookie value v.
// With none the node claims the session (handle set its cookie); a cookie
// naming this node passes; a cookie naming another node is a session this
// node does not own: 409 with X-Session-Ended and this node's cookie. It
// reports whether to go on.
func (n *Node) checkCookie(ctx *fasthttp.RequestCtx, v []byte) bool {
	if len(v) == 0 || n.owns(v) {
		return true
	}
	n.stats.sessions409.Add(1)
	ctx.Response.Header.Set(HeaderSessionEnded, "1")
	ctx.Response.Header.Set("Set-Cookie", n.setCookie)
	answer(ctx, fasthttp.StatusConflict, "session not owned by node "+n.name+"\n")
	return false
}

// owns reports whether a cookie value names this node: the bare name, or
// "<anything>.<name>".
func (n *Node) owns(v []byte) bool {
	return bytes.Equal(v, n.nameBytes) || bytes.HasSuffix(v, n.dotName)
}

func (n *Node) serveHealth(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; charset=utf-8")
	if n.healthy.Load() {
		ctx.SetBodyString("ok\n")
		return
	}
	ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
	ctx.SetBodyString("unhealthy\n")
}

func (n *Node) serveCtlHealth(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		answer(ctx, fasthttp.StatusMethodNotAllowed, "use POST\n")
		return
	}
	switch string(ctx.QueryArgs().Peek("up")) {
	case "1":
		n.SetHealthy(true)
	case "0":
		n.SetHealthy(false)
	default:
		answer(ctx, fasthttp.StatusBadRequest, "want up=0 or up=1\n")
		return
	}
	n.log.Info().Bool("healthy", n.healthy.Load()).Msg("health switched")
	ctx.SetBodyString("ok\n")
}

// serveResource answers a body of N pattern bytes: with Content-Length, or
// chunked with chunked=1. Nothing is buffered beyond a chunk.
func (n *Node) serveResource(ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	size, err := strconv.ParseInt(string(args.Peek("bytes")), 10, 64)
	if err != nil || size < 0 || size > MaxResourceBytes {
		answer(ctx, fasthttp.StatusBadRequest, fmt.Sprintf("want bytes=N with 0 <= N <= %d\n", MaxResourceBytes))
		return
	}
	ctx.SetContentType("application/octet-stream")
	if string(args.Peek("chunked")) == "1" {
		w := &resourceWriter{size: size, done: n.done}
		ctx.SetBodyStreamWriter(w.write)
		return
	}
	ctx.SetBodyStream(&patternReader{size: size}, int(size))
}

// serveUpload reads the whole request body a chunk at a time and answers
// "<bytes> <sha256-hex>".
func (n *Node) serveUpload(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() && !ctx.IsPut() {
		ctx.Response.Header.Set("Allow", "POST, PUT")
		answer(ctx, fasthttp.StatusMethodNotAllowed, "use POST or PUT\n")
		return
	}
	h := sha256.New()
	var total int64
	if r := ctx.RequestBodyStream(); r != nil {
		bufp := chunkPool.Get().(*[]byte)
		defer chunkPool.Put(bufp)
		buf := *bufp
		for {
			k, err := r.Read(buf)
			h.Write(buf[:k])
			total += int64(k)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				n.log.Debug().Err(err).Int64("bytes_in", total).Msg("upload cut")
				answer(ctx, fasthttp.StatusBadRequest, "body read: "+err.Error()+"\n")
				return
			}
		}
	} else {
		body := ctx.PostBody()
		h.Write(body)
		total = int64(len(body))
	}
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(strconv.FormatInt(total, 10) + " " + hex.EncodeToString(h.Sum(nil)))
}

// serveEchoHeaders answers the request head as received: the request line,
// then every header line in order as "Name: value".
func (n *Node) serveEchoHeaders(ctx *fasthttp.RequestCtx) {
	var b bytes.Buffer
	b.Write(ctx.Method())
	b.WriteByte(' ')
	b.Write(ctx.Request.Header.RequestURI())
	b.WriteByte(' ')
	b.Write(ctx.Request.Header.Protocol())
	b.WriteByte('\n')
	raw := ctx.Request.Header.RawHeaders()
	if len(raw) > 0 {
		for line := range bytes.SplitSeq(raw, []byte("\n")) {
			line = bytes.TrimSuffix(line, []byte("\r"))
			if len(line) == 0 {
				continue
			}
			b.Write(line)
			b.WriteByte('\n')
		}
	} else {
		for k, v := range ctx.Request.Header.All() {
			b.Write(k)
			b.WriteString(": ")
			b.Write(v)
			b.WriteByte('\n')
		}
	}
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBody(b.Bytes())
}

// serveBadRequest answers a request fasthttp could not read, with X-Node
// like every answer of the node.
func (n *Node) serveBadRequest(ctx *fasthttp.RequestCtx, err error) {
	n.log.Debug().Err(err).Msg("bad request")
	ctx.Response.Header.SetBytesV(HeaderNode, n.nameBytes)
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		answer(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "request head too large\n")
	case errors.As(err, &ne) && ne.Timeout():
		answer(ctx, fasthttp.StatusRequestTimeout, "request timeout\n")
	default:
		answer(ctx, fasthttp.StatusBadRequest, "bad request\n")
	}
}

// upgradeError answers a failed WebSocket handshake.
func (n *Node) upgradeError(ctx *fasthttp.RequestCtx, status int, reason error) {
	n.log.Debug().Err(reason).Int("status", status).Msg("websocket handshake refused")
	answer(ctx, status, reason.Error()+"\n")
}

// answer sets a plain-text status answer. Unlike ctx.Error it keeps the
// headers already set (X-Node, Set-Cookie).
func answer(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(msg)
}

func allowAnyOrigin(*fasthttp.RequestCtx) bool { return true }

// patternAlphabet is the cycle of resource bytes: byte i of a resource is
// patternAlphabet[i%64].
const patternAlphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n"

// Pattern fills p with the bytes of a /cobrowse/resource body starting at
// offset off, so that clients can check what they received.
func Pattern(p []byte, off int64) {
	for i := range p {
		p[i] = patternAlphabet[(off+int64(i))&63]
	}
}

// patternReader reads size pattern bytes.
type patternReader struct {
	size, off int64
}

func (r *patternReader) Read(p []byte) (int, error) {
	left := r.size - r.off
	if left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	Pattern(p, r.off)
	r.off += int64(len(p))
	return len(p), nil
}

// resourceWriter writes size pattern bytes as a chunked body.
type resourceWriter struct {
	size int64
	done <-chan struct{}
}

func (w *resourceWriter) write(bw *bufio.Writer) {
	bufp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bufp)
	buf := *bufp
	for off := int64(0); off < w.size; {
		select {
		case <-w.done:
			return
		default:
		}
		k := min(int64(len(buf)), w.size-off)
		Pattern(buf[:k], off)
		if _, err := bw.Write(buf[:k]); err != nil {
			return
		}
		if err := bw.Flush(); err != nil {
			return
		}
		off += k
	}
}

// chunkPool holds the 32 KiB buffers of uploads and chunked resources.
var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

// fasthttpLogger sends fasthttp's own messages to zerolog at Debug.
type fasthttpLogger struct {
	log zerolog.Logger
}

func (l fasthttpLogger) Printf(format string, args ...any) {
	if e := l.log.Debug(); e.Enabled() {
		e.Str("detail", fmt.Sprintf(format, args...)).Msg("fasthttp")
	}
}
