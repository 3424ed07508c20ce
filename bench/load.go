package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

// Scenarios of RunLoad.
const (
	ScenarioHTTP = "http" // keep-alive connections GETting resources
	// ScenarioCobrowse: co-browse sessions, a customer and an agent
	// WebSocket each, DOM updates (and snapshots) relayed customer → agent.
	ScenarioCobrowse = "cobrowse"
	ScenarioWS       = "ws" // the first name of ScenarioCobrowse: the same scenario
	// ScenarioWSEcho: one echo WebSocket per session; a message is a round
	// trip through the target and back.
	ScenarioWSEcho = "ws-echo"
	// ScenarioLongPoll: the co-browse sessions over the long-poll transport:
	// the customer POSTs /cobrowse/send, the agent holds GET /cobrowse/poll.
	ScenarioLongPoll = "longpoll"
	ScenarioMixed    = "mixed" // http and cobrowse at once
	// ScenarioBig: DOM snapshots of BigMB each way: uploads checked by the
	// node's sha256, downloads checked against Pattern.
	ScenarioBig = "big"
	// ScenarioTLSHandshake: a new TLS connection per operation, each with
	// one small GET, against an https target.
	ScenarioTLSHandshake = "tls-handshake"
	ScenarioIdle         = "idle" // echo WebSockets held idle while the target's resources are read
	// ScenarioIdleHTTP: plain keep-alive connections, each after one GET,
	// held idle while the target's resources are read.
	ScenarioIdleHTTP = "idle-http"
	// ScenarioFailover: echo WebSockets of one node, told by tether that the
	// node died; run by RunFailover, which knows the node.
	ScenarioFailover = "failover"
)

// Scenarios lists the scenarios of RunLoad and RunFailover.
var Scenarios = []string{ScenarioHTTP, ScenarioCobrowse, ScenarioWS, ScenarioWSEcho, ScenarioLongPoll, ScenarioMixed,
	ScenarioBig, ScenarioTLSHandshake, ScenarioIdle, ScenarioIdleHTTP, ScenarioFailover}

// isIdleScenario reports the scenarios that hold connections idle and read
// the target's resources (runIdle).
func isIdleScenario(scenario string) bool {
	return scenario == ScenarioIdle || scenario == ScenarioIdleHTTP
}

// Bounds of a load run.
const (
	MaxLoadDuration = 24 * time.Hour
	MaxLoadConns    = 10_000
	// MaxLoadSessions keeps a run's sockets (two per session) well under the
	// 20,000 descriptors a process may open.
	MaxLoadSessions = 5_000
	// MaxBigMB bounds BigMB: the node serves resources up to 1 GiB.
	MaxBigMB = MaxResourceBytes / 1_000_000
	// minMessageBytes holds a message's send time and sequence number.
	minMessageBytes = 16
)

// LoadConfig configures RunLoad. Zero values mean the defaults given.
type LoadConfig struct {
	// Target is the base URL of tether (or of a node), e.g.
	// "http://127.0.0.1:8080" or "https://127.0.0.1:8443" (WebSockets are
	// then wss). Required; it must be a loopback address.
	Target string
	// Scenario is one of Scenarios; "" means mixed.
	Scenario string
	// Duration is how long new operations start; 0 means 5s. The run ends at
	// most Timeout (plus a second to close WebSockets) later.
	Duration time.Duration
	// Conns is the number of connections of http, mixed and big, and of
	// concurrent handshakes of tls-handshake; 0 means 8.
	Conns int
	// Sessions is the number of co-browse sessions (cobrowse, mixed,
	// longpoll) or echo WebSockets (ws-echo); 0 means 20.
	Sessions int
	// Rate, when positive, runs an open loop: every connection or session
	// starts Rate operations (requests, messages, transfers, handshakes) a
	// second on a fixed schedule, and latency runs from each one's
	// scheduled start (see load_pace.go). The total is Rate × Conns or
	// Rate × Sessions. 0 means a closed loop: one operation in flight per
	// connection or session, the next as soon as it ends.
	Rate float64
	// ResourceBytes is the size of each GET /cobrowse/resource; 0 means 1024.
	ResourceBytes int
	// MessageBytes is the size of each message (a DOM update); 0 means
	// 2048, at least 16.
	MessageBytes int
	// SnapshotEvery makes every SnapshotEvery-th message of a session a DOM
	// snapshot of SnapshotBytes (cobrowse, mixed, longpoll, ws-echo); 0
	// means none. Snapshots have their own latency line.
	SnapshotEvery int
	// SnapshotBytes is the size of a snapshot; 0 means 256 KiB.
	SnapshotBytes int
	// BigMB is the size of each upload and download of big, in MB of
	// 1,000,000 bytes; 0 means 10.
	BigMB int
	// Insecure skips the verification of an https target's certificate
	// (self-signed test certificates).
	Insecure bool
	// Cookie is the stickiness cookie name; "" means DefaultCookie.
	Cookie string
	// Timeout bounds each operation (request, handshake, message); 0 means 5s.
	Timeout time.Duration
	// Progress receives a line a second while the run lasts; nil means none.
	Progress io.Writer

	// The fields below belong to the idle scenario (see RunLoad).

	// PID is the process whose resources are read (tether's); required.
	PID int
	// Pprof is the base URL of the target's admin listener with Go's
	// profiler on (tether --admin ADDR --pprof), e.g.
	// "http://127.0.0.1:9090"; when set, the target's live Go heap is read
	// (after a collection) beside its RSS. "" means not read.
	Pprof string
	// Hold is how long the sessions stay idle once open; 0 means 10s.
	Hold time.Duration
	// Settle is the wait between the last session opened and the reading of
	// the target; 0 means 2s. It is cut to Hold.
	Settle time.Duration
	// SourceIPs spreads the client sockets over the source addresses
	// 127.0.0.1..127.0.0.K, each with its own ephemeral ports; 0 means 1,
	// which lets the kernel pick the source address.
	SourceIPs int
	// Concurrency is the number of sessions opened (and checked) at once;
	// 0 means 64.
	Concurrency int
}

// withDefaults fills in zero values.
func (c LoadConfig) withDefaults() LoadConfig {
	if c.Scenario == "" {
		c.Scenario = ScenarioMixed
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
	}
	if c.Conns == 0 {
		c.Conns = 8
	}
	if c.Sessions == 0 {
		c.Sessions = 20
	}
	if c.ResourceBytes == 0 {
		c.ResourceBytes = 1024
	}
	if c.MessageBytes == 0 {
		c.MessageBytes = 2048
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = 256 << 10
	}
	if c.BigMB == 0 {
		c.BigMB = 10
	}
	if c.Cookie == "" {
		c.Cookie = DefaultCookie
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if isIdleScenario(c.Scenario) {
		c = c.idleDefaults()
	}
	return c
}

// Validate checks c after defaults, naming the flag of a bad value.
func (c LoadConfig) Validate() error {
	c = c.withDefaults()
	if !slices.Contains(Scenarios, c.Scenario) {
		return fmt.Errorf("--scenario %q: want one of %s", c.Scenario, strings.Join(Scenarios, ", "))
	}
	tgt, err := newTarget(c)
	if err != nil {
		return err
	}
	switch {
	case c.Duration < 0 || c.Duration > MaxLoadDuration:
		return fmt.Errorf("--duration %v: want 0 < d <= %v", c.Duration, MaxLoadDuration)
	case c.Conns < 0 || c.Conns > MaxLoadConns:
		return fmt.Errorf("--conns %d: want 1..%d", c.Conns, MaxLoadConns)
	case !isIdleScenario(c.Scenario) && (c.Sessions < 0 || c.Sessions > MaxLoadSessions):
		return fmt.Errorf("--sessions %d: want 1..%d", c.Sessions, MaxLoadSessions)
	case c.Rate < 0 || c.Rate > maxRate:
		return fmt.Errorf("--rate %g: want 0 (closed loop) or up to %g a second per connection or session", c.Rate, float64(maxRate))
	case c.Rate > 0 && (isIdleScenario(c.Scenario) || c.Scenario == ScenarioFailover):
		return fmt.Errorf("--rate %g: the %s scenario has no rate", c.Rate, c.Scenario)
	case c.ResourceBytes < 0 || c.ResourceBytes > MaxResourceBytes:
		return fmt.Errorf("--bytes %d: want 0..%d", c.ResourceBytes, MaxResourceBytes)
	case c.MessageBytes < minMessageBytes || c.MessageBytes > MaxMessageBytes:
		return fmt.Errorf("--msg-bytes %d: want %d..%d", c.MessageBytes, minMessageBytes, MaxMessageBytes)
	case c.SnapshotBytes < minMessageBytes || c.SnapshotBytes > MaxMessageBytes:
		return fmt.Errorf("--snapshot-bytes %d: want %d..%d", c.SnapshotBytes, minMessageBytes, MaxMessageBytes)
	case c.SnapshotEvery < 0:
		return fmt.Errorf("--snapshot-every %d: want 0 (none) or more", c.SnapshotEvery)
	case c.BigMB < 0 || c.BigMB > MaxBigMB:
		return fmt.Errorf("--big-mb %d: want 1..%d", c.BigMB, MaxBigMB)
	case c.Timeout < 0:
		return fmt.Errorf("--timeout %v: want > 0", c.Timeout)
	case c.Scenario == ScenarioTLSHandshake && tgt.tls == nil:
		return fmt.Errorf("--target %q: the %s scenario needs an https:// target", c.Target, c.Scenario)
	}
	if isIdleScenario(c.Scenario) {
		return c.validateIdle()
	}
	return nil
}

// target is where a run sends its traffic.
type target struct {
	addr string      // host:port
	host string      // the host alone, for Host headers and TLS names
	tls  *tls.Config // the client's TLS settings; nil for an http target
}

// newTarget checks that c.Target is an http or https URL of a loopback
// host and returns it as a target.
func newTarget(c LoadConfig) (target, error) {
	u, err := url.Parse(c.Target)
	if err != nil || u.Host == "" {
		return target{}, fmt.Errorf("--target %q: want a URL like http://127.0.0.1:8080", c.Target)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return target{}, fmt.Errorf("--target %q: want an http:// or https:// URL", c.Target)
	}
	if err := CheckLoopback(u.Host); err != nil {
		return target{}, fmt.Errorf("--target %q: %w", c.Target, err)
	}
	t := target{host: u.Hostname()}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	t.addr = net.JoinHostPort(t.host, port)
	if u.Scheme == "https" {
		t.tls = clientTLS(t.host, c.Insecure)
	}
	return t, nil
}

// clientTLS is the TLS configuration of the load's clients. It offers the
// X25519 key exchange alone, so that every target does the same work:
// Go's default would also offer X25519MLKEM768, which a Go server prefers
// and most OpenSSL builds (nginx's, HAProxy's) do not do. No session is
// resumed: every connection does a full handshake.
func clientTLS(host string, insecure bool) *tls.Config {
	return &tls.Config{
		ServerName:         host,
		InsecureSkipVerify: insecure, //nolint:gosec // --insecure, for self-signed test certificates
		CurvePreferences:   []tls.CurveID{tls.X25519},
		MinVersion:         tls.VersionTLS12,
	}
}

// url is the http or https URL of path (with its query) on t.
func (t target) url(path string) string {
	if t.tls != nil {
		return "https://" + t.addr + path
	}
	return "http://" + t.addr + path
}

// wsURL is the ws or wss URL of path (with its query) on t.
func (t target) wsURL(path string) string {
	if t.tls != nil {
		return "wss://" + t.addr + path
	}
	return "ws://" + t.addr + path
}

// hostClient is a client of one keep-alive connection to t, which never
// retries by itself: every failure the target causes is counted. It keeps
// its connection idle for up to clientIdle, so a paced load sparser than
// fasthttp's default 10 s measures requests on kept connections, not a
// reconnection per request.
func (t target) hostClient(timeout time.Duration) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:                      t.addr,
		Name:                      "tether-bench",
		IsTLS:                     t.tls != nil,
		TLSConfig:                 t.tls,
		MaxConns:                  1,
		ReadBufferSize:            16 << 10,
		WriteBufferSize:           16 << 10,
		ReadTimeout:               timeout,
		WriteTimeout:              timeout,
		MaxIdemponentCallAttempts: 1,
		MaxIdleConnDuration:       clientIdle,
	}
}

// clientIdle is how long the generator keeps an idle keep-alive
// connection: below the 120 s that tether (--idle-timeout), nginx
// (keepalive_timeout) and HAProxy (timeout http-keep-alive) keep one in
// the comparison, so no request finds its connection closed by the peer.
const clientIdle = 100 * time.Second

// wsDialer is a WebSocket dialer to t with buffers of bufSize bytes, from
// the source address local (nil: the kernel's choice).
func (t target) wsDialer(timeout time.Duration, bufSize int, local *net.TCPAddr) *websocket.Dialer {
	d := &websocket.Dialer{
		HandshakeTimeout: timeout,
		ReadBufferSize:   bufSize,
		WriteBufferSize:  bufSize,
		TLSClientConfig:  t.tls,
	}
	if local != nil {
		d.NetDialContext = (&net.Dialer{Timeout: timeout, LocalAddr: local}).DialContext
	}
	return d
}

// ErrNotLoopback is returned for addresses off the loopback interface: the
// harness only ever talks to this machine.
var ErrNotLoopback = errors.New("bench: not a loopback address")

// CheckLoopback accepts "host:port" or "host" whose host is "localhost" or
// a loopback IP.
func CheckLoopback(hostport string) error {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q: %w", host, ErrNotLoopback)
}

// ListenLoopback listens on addr ("127.0.0.1:0" picks a port), which must
// be a loopback address.
func ListenLoopback(addr string) (net.Listener, error) {
	if err := CheckLoopback(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, nil
}
