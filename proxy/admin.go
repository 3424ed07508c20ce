package proxy

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/tether-lb/tether/pool"
)

// The admin listener is for operators, not clients: it serves net/http
// (the data path does not), on loopback by default.

// NodeStatus is one node's row of /status.
type NodeStatus struct {
	Name      string    `json:"name"`
	Addr      string    `json:"addr"`
	State     string    `json:"state"`
	Since     time.Time `json:"since"`
	LastError string    `json:"last_error,omitempty"`
	Sessions  int64     `json:"ws_sessions"`
	InFlight  int64     `json:"in_flight"`
	Served    uint64    `json:"served"`
	IdleConns int       `json:"idle_conns"`
	Dials     uint64    `json:"dials"`
	Reuses    uint64    `json:"reuses"`
}

// Status is the body of /status.
type Status struct {
	Started time.Time    `json:"started"`
	Conns   int64        `json:"client_conns"`
	Nodes   []NodeStatus `json:"nodes"`
}

// Status returns a snapshot of tether's state for the admin endpoints.
func (s *Server) Status() Status {
	st := Status{Started: s.started, Conns: s.conns.Load()}
	for _, n := range s.pool.Table().Nodes() {
		st.Nodes = append(st.Nodes, nodeStatus(n))
	}
	return st
}

func nodeStatus(n *pool.Node) NodeStatus {
	return NodeStatus{
		Name:      n.Name,
		Addr:      n.Addr,
		State:     n.State().String(),
		Since:     n.Since().UTC(),
		LastError: n.LastError(),
		Sessions:  n.Sessions.Load(),
		InFlight:  n.InFlight.Load(),
		Served:    n.Served.Load(),
		IdleConns: n.IdleConns(),
		Dials:     n.Dials.Load(),
		Reuses:    n.Reuses.Load(),
	}
}

// AdminHandler serves /metrics (Prometheus), /status (JSON, or HTML for a
// browser), /healthz,
// POST /nodes/NAME/drain and /nodes/NAME/enable, and with Config.Pprof the
// Go profiler under /debug/pprof/.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", s.serveStatus)
	mux.HandleFunc("GET /healthz", s.serveHealthz)
	mux.Handle("GET /metrics", s.metricsHandler())
	mux.HandleFunc("POST /nodes/{name}/{action}", s.serveNodeAction)
	if s.cfg().Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	}
	return mux
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
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.admins = append(s.admins, srv)
	s.mu.Unlock()
	s.log.Info().Str("addr", ln.Addr().String()).Msg("admin listening")
	if s.cfg().Pprof {
		srv.WriteTimeout = 0 // profiles stream for their duration
	}
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.isClosing() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "shutting down")
		return
	}
	fmt.Fprintln(w, "ok")
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

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>tether status</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}th,td{padding:.35em .8em;border-bottom:1px solid #ddd;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#17803d}.down{color:#c0262d;font-weight:bold}.draining{color:#b26b00}
</style></head><body>
<h1>tether</h1>
<p>up since {{.Started.Format "2006-01-02 15:04:05 MST"}} · {{.Conns}} client connections · refreshes every 2s</p>
<table><thead><tr><th>node</th><th>address</th><th>state</th><th>for</th><th>WebSocket sessions</th><th>requests in flight</th><th>served</th><th>idle conns</th><th>last error</th></tr></thead><tbody>
{{range .Nodes}}<tr id="node-{{.Name}}"><td>{{.Name}}</td><td>{{.Addr}}</td><td class="{{.State}}">{{.State}}</td><td>{{ago .Since}}</td><td class="num">{{.Sessions}}</td><td class="num">{{.InFlight}}</td><td class="num">{{.Served}}</td><td class="num">{{.IdleConns}}</td><td>{{.LastError}}</td></tr>
{{end}}</tbody></table>
</body></html>
`))
