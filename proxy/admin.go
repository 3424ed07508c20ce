package proxy

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/tether-lb/tether/pool"
)

// The admin listener is for operators, not clients: it serves net/http
// (the data path does not), on loopback by default.

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
}

// Status returns a snapshot of tether's state for the admin endpoints.
func (s *Server) Status() Status {
	st := Status{Started: s.started, Conns: s.conns.open.Load()}
	for _, n := range s.pool.Table().Nodes() {
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
		Sessions:    n.Sessions.Load(),
		InFlight:    n.InFlight.Load(),
		Served:      n.Served.Load(),
		IdleConns:   n.IdleConns(),
		Dials:       n.Dials.Load(),
		Reuses:      n.Reuses.Load(),
	}
}

// AdminHandler serves /metrics (Prometheus), /status (JSON, or HTML for a
// browser), /healthz, /livez, POST /nodes/NAME/drain and /nodes/NAME/enable, and
// with Config.Pprof the Go profiler under /debug/pprof/, behind the Host,
// token and cross-site checks of adminGuard.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", s.serveStatus)
	mux.HandleFunc("GET /healthz", s.serveHealthz)
	mux.HandleFunc("GET /livez", s.serveLivez)
	mux.Handle("GET /metrics", s.metricsHandler())
	mux.HandleFunc("POST /nodes/{name}/{action}", s.serveNodeAction)
	if s.cfg().Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	}
	return s.adminGuard(mux)
}

// ServeAdmin serves the admin endpoints on ln until Shutdown.
func (s *Server) ServeAdmin(ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.AdminHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.admins = append(s.admins, srv)
	s.mu.Unlock()
	s.log.Info().Str("addr", ln.Addr().String()).Bool("token", s.adminToken.Load() != nil).Msg("admin listening")
	if s.cfg().Pprof {
		srv.WriteTimeout = 0 // profiles stream for their duration
	}
	if !s.trackAdmin(ln) {
		return nil
	}
	if err := srv.Serve(ln); err != http.ErrServerClosed && !s.acceptStopped() {
		return err
	}
	return nil
}

// Withdraw makes /healthz answer 503 from now on while tether goes on
// accepting and serving: the first step of a drain behind an L4 tier, whose
// health checks take this tether out of rotation before Shutdown closes its
// listeners. It returns Config.DrainDelay, how long the caller should keep
// serving before it calls Shutdown. Shutdown alone also makes /healthz 503.
func (s *Server) Withdraw() time.Duration {
	s.withdrawn.Store(true)
	return s.cfg().DrainDelay
}

// serveHealthz answers readiness: 200 while tether takes traffic, 503 from
// the moment its drain begins (Withdraw or Shutdown). No token needed.
func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.withdrawn.Load() || s.isClosing() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "shutting down")
		return
	}
	fmt.Fprintln(w, "ok")
}

// serveLivez answers liveness: 200 while the process runs, during a drain
// too (restarting a draining tether would cut its sessions). No token
// needed.
func (s *Server) serveLivez(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, "alive")
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	st := s.Status()
	if wantsHTML(r) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := statusPage.Execute(w, st); err != nil {
			s.log.Debug().Err(err).Msg("status page")
		}
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// serveNodeAction drains or enables a node by name.
func (s *Server) serveNodeAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	n := s.pool.Node(name)
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
	s.log.Info().Str("node", name).Str("action", action).Str("remote", r.RemoteAddr).Msg("admin")
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

// statusPage is the HTML /status: rendered with the current figures, then
// kept live by a small inline script that polls the JSON /status every two
// seconds and computes requests per second and the error rate per node from
// the counters' differences. No external assets.
var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>tether status</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}
table{border-collapse:collapse;margin-top:1em}th,td{padding:.4em .9em;border-bottom:1px solid #ddd;text-align:left}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#17803d;font-weight:600}.down{color:#c0262d;font-weight:bold}.draining{color:#b26b00;font-weight:600}
#stale{color:#c0262d;display:none}
</style></head><body>
<h1>tether</h1>
<p>up since {{.Started.Format "2006-01-02 15:04:05 MST"}} · <span id="conns">{{.Conns}}</span> client connections · live, every 2s <span id="stale">(status unreachable)</span></p>
<table><thead><tr><th>node</th><th>address</th><th>state</th><th>for</th><th>WebSocket sessions</th><th>in flight</th><th>req/s</th><th>errors</th><th>served</th><th>last error</th></tr></thead><tbody id="nodes">
{{range .Nodes}}<tr id="node-{{.ID}}" data-state="{{.State}}"><td>{{.Name}}</td><td>{{.Addr}}</td><td class="state {{.State}}">{{.State}}{{if .Removed}} (removed){{end}}</td><td class="since">{{ago .Since}}</td><td class="num sessions">{{.Sessions}}</td><td class="num inflight">{{.InFlight}}</td><td class="num rps">–</td><td class="num errs">–</td><td class="num served">{{.Served}}</td><td class="lasterr">{{if .LastError}}{{.LastError}} ({{ago .LastErrorAt}} ago){{end}}</td></tr>
{{end}}</tbody></table>
<script>
"use strict";
let last = null;
function ago(s) { const d = Math.max(0, (Date.now() - Date.parse(s)) / 1000); return d < 120 ? Math.round(d) + "s" : d < 7200 ? Math.round(d / 60) + "m" : Math.round(d / 3600) + "h"; }
function cell(tr, cls, v) { tr.querySelector("." + cls).textContent = v; }
async function refresh() {
  let st;
  try { st = await (await fetch("status?format=json", {cache: "no-store"})).json(); }
  catch (e) { document.getElementById("stale").style.display = "inline"; return; }
  document.getElementById("stale").style.display = "none";
  document.getElementById("conns").textContent = st.client_conns;
  const now = Date.now(), body = document.getElementById("nodes");
  for (const n of st.nodes) {
    let tr = document.getElementById("node-" + n.id);
    if (!tr) {
      if (!body.rows.length) continue;
      tr = body.rows[0].cloneNode(true); tr.id = "node-" + n.id; body.appendChild(tr);
      tr.cells[0].textContent = n.name; tr.cells[1].textContent = n.addr;
    }
    tr.dataset.state = n.state;
    const s = tr.querySelector(".state"); s.textContent = n.state + (n.removed ? " (removed)" : ""); s.className = "state " + n.state;
    cell(tr, "since", ago(n.since)); cell(tr, "sessions", n.ws_sessions); cell(tr, "inflight", n.in_flight);
    cell(tr, "served", n.served); cell(tr, "lasterr", n.last_error ? n.last_error + " (" + ago(n.last_error_at) + " ago)" : "");
    const p = last && last.nodes[n.id];
    if (p) {
      const dt = (now - last.at) / 1000, da = n.answers - p.answers, de = n.errors_5xx - p.errors_5xx;
      cell(tr, "rps", (da / dt).toFixed(1));
      cell(tr, "errs", da > 0 ? (100 * de / da).toFixed(1) + "%" : "0%");
    }
  }
  for (const tr of [...body.rows]) { if (!st.nodes.some(n => "node-" + n.id === tr.id)) tr.remove(); }
  last = {at: now, nodes: Object.fromEntries(st.nodes.map(n => [n.id, n]))};
}
refresh(); setInterval(refresh, 2000);
</script>
</body></html>
`))
