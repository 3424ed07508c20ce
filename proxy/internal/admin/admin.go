package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/tlsterm"
)

// The admin listener is for operators, not clients: it serves net/http
// (the data path does not), on loopback by default.

// Server is what the admin endpoints read and act on.
type Server interface {
	// Nodes are the routing table's nodes, the copies a reload removed that
	// still drain included.
	Nodes() []*pool.Node
	// Node is the live node named name, or nil: what the node actions act
	// on.
	Node(name string) *pool.Node
	// Counters are the server's own counters now.
	Counters() Counters
	// Ready reports whether tether takes traffic: false from the moment its
	// drain begins.
	Ready() bool
	// Access is what the guard checks now (a reload changes it).
	Access() Access
	// Predecessors are the older tether processes still serving what they
	// kept after handing over to this one (nil: none).
	Predecessors() []Predecessor
}

// Occupancy is what a tether process holds now.
type Occupancy struct {
	Conns       int64 `json:"conns"`        // client connections open, sessions not included
	Sessions    int64 `json:"sessions"`     // WebSocket sessions
	TLSSessions int64 `json:"tls_sessions"` // of which over TLS
	InFlight    int64 `json:"in_flight"`    // requests being answered
}

// Predecessor is an older tether process that handed over to this one (or
// to one before it) and still serves what could not move, as its last
// status report said.
type Predecessor struct {
	PID     int    `json:"pid"`
	Version string `json:"version"`
	Occupancy
	Updated time.Time `json:"updated"` // when the process sent these figures
}

// Counters are a server's own counters, read when an operator asks.
type Counters struct {
	Started     time.Time
	ClientConns int64 // open client connections, spliced sessions included
	// MaxConnsRefused and ProxyRefused count connections closed at accept:
	// past --max-conns, and for a missing, malformed or untrusted PROXY
	// protocol header.
	MaxConnsRefused, ProxyRefused uint64
	// Refused counts the answers tether gave itself, by status: Refused[i]
	// for RefusedStatuses[i].
	Refused [len(RefusedStatuses)]uint64
	DNS     pool.DNSLookups
	TLS     *tlsterm.HandshakeStats // nil without a TLS listener
}

// RefusedStatuses are the statuses tether answers itself, each counted.
var RefusedStatuses = [...]int{400, 408, 413, 431, 502, 503, 504}

// NodeStatus is one node's row of /status.
type NodeStatus struct {
	// ID tells apart two copies of one name: a node a reload removed, still
	// draining, and its successor. It is the name for a node of the first
	// configuration and "NAME@GENERATION" for one a later reload built; it
	// never changes for one copy.
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Generation uint64    `json:"generation"` // the reload that built this copy (0: the first configuration)
	Addr       string    `json:"addr"`
	State      string    `json:"state"`
	Since      time.Time `json:"since"`
	// LastError is the last failed probe or connection; it stays after the
	// node recovers, and LastErrorAt says when it happened.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Sessions    int64     `json:"ws_sessions"`
	InFlight    int64     `json:"in_flight"`
	Served      uint64    `json:"served"`
	Answers     uint64    `json:"answers"`    // answers relayed (all status classes)
	Errors      uint64    `json:"errors_5xx"` // of which 5xx (the node's or tether's 502/504)
	Removed     bool      `json:"removed,omitempty"`
	IdleConns   int       `json:"idle_conns"`
	Dials       uint64    `json:"dials"`
	Reuses      uint64    `json:"reuses"`
}

// Status is the body of /status.
type Status struct {
	Started time.Time    `json:"started"`
	Conns   int64        `json:"client_conns"`
	Nodes   []NodeStatus `json:"nodes"`
	// Predecessors are the older processes still serving sessions they
	// kept after a hand-over (an empty list: none).
	Predecessors []Predecessor `json:"predecessors"`
}

// Snapshot is srv's state as /status shows it.
func Snapshot(srv Server) Status {
	c := srv.Counters()
	st := Status{Started: c.Started, Conns: c.ClientConns, Predecessors: srv.Predecessors()}
	if st.Predecessors == nil {
		st.Predecessors = []Predecessor{}
	}
	for _, n := range srv.Nodes() {
		st.Nodes = append(st.Nodes, nodeStatus(n))
	}
	return st
}

func nodeStatus(n *pool.Node) NodeStatus {
	var answers uint64
	for i := range n.Stats.ByClass {
		answers += n.Stats.ByClass[i].Load()
	}
	id := n.Name
	if g := n.Generation(); g > 0 {
		id += "@" + strconv.FormatUint(g, 10)
	}
	var errAt time.Time
	if at := n.LastErrorAt(); !at.IsZero() {
		errAt = at.UTC()
	}
	return NodeStatus{
		ID:          id,
		Generation:  n.Generation(),
		Answers:     answers,
		Errors:      n.Stats.ByClass[5].Load(),
		Removed:     n.Removed(),
		Name:        n.Name,
		Addr:        n.Addr,
		State:       n.State().String(),
		Since:       n.Since().UTC(),
		LastError:   n.LastError(),
		LastErrorAt: errAt,
		Sessions:    n.Sessions(),
		InFlight:    n.InFlight(),
		Served:      n.Served.Load(),
		IdleConns:   n.IdleConns(),
		Dials:       n.Dials.Load(),
		Reuses:      n.Reuses.Load(),
	}
}

// endpoints serves the admin paths for one Server.
type endpoints struct {
	srv    Server
	log    zerolog.Logger // node actions, the status page's errors
	errLog zerolog.Logger // sampled: refused requests
}

// Handler serves /metrics (Prometheus), /status (JSON, or HTML for a
// browser), /healthz, /livez, POST /nodes/NAME/drain and /nodes/NAME/enable,
// and with withPprof the Go profiler under /debug/pprof/, behind the Host,
// token and cross-site checks of the guard (guard.go). log receives the
// node actions; errLog (sampled) the refused requests.
func Handler(srv Server, withPprof bool, log, errLog zerolog.Logger) http.Handler {
	e := &endpoints{srv: srv, log: log, errLog: errLog}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", e.serveStatus)
	mux.HandleFunc("GET /healthz", e.serveHealthz)
	mux.HandleFunc("GET /livez", serveLivez)
	mux.Handle("GET /metrics", metricsHandler(srv))
	mux.HandleFunc("POST /nodes/{name}/{action}", e.serveNodeAction)
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	}
	return e.guard(mux)
}

// NewHTTPServer is the admin listener's net/http server for h, with bounded
// reads and writes (no write bound with withPprof: profiles stream for
// their duration).
func NewHTTPServer(h http.Handler, withPprof bool) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	if withPprof {
		srv.WriteTimeout = 0
	}
	return srv
}

// serveHealthz answers readiness: 200 while tether takes traffic, 503 from
// the moment its drain begins (Withdraw or Shutdown). No token needed.
func (e *endpoints) serveHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !e.srv.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "shutting down")
		return
	}
	fmt.Fprintln(w, "ok")
}

// serveLivez answers liveness: 200 while the process runs, during a drain
// too (restarting a draining tether would cut its sessions). No token
// needed.
func serveLivez(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, "alive")
}

func (e *endpoints) serveStatus(w http.ResponseWriter, r *http.Request) {
	st := Snapshot(e.srv)
	if wantsHTML(r) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := statusPage.Execute(w, st); err != nil {
			e.log.Debug().Err(err).Msg("status page")
		}
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// serveNodeAction drains or enables a node by name.
func (e *endpoints) serveNodeAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	n := e.srv.Node(name)
	if n == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no node named %q", name)})
		return
	}
	switch action {
	case "drain":
		n.Drain()
	case "enable":
		n.Enable()
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("unknown action %q: use drain or enable", action)})
		return
	}
	e.log.Info().Str("node", name).Str("action", action).Str("remote", r.RemoteAddr).Msg("admin")
	writeJSON(w, http.StatusOK, nodeStatus(n))
}

// wantsHTML reports whether the client prefers a page to JSON.
func wantsHTML(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "html"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
