package admin

import (
	"crypto/sha256"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/pool"
)

// fakeServer is a Server of fixed counters over a pool of its own.
type fakeServer struct {
	p        *pool.Pool
	counters Counters
	ready    bool
	access   Access
	preds    []Predecessor
}

func (f *fakeServer) Nodes() []*pool.Node         { return f.p.Table().Nodes() }
func (f *fakeServer) Node(name string) *pool.Node { return f.p.Node(name) }
func (f *fakeServer) Counters() Counters          { return f.counters }
func (f *fakeServer) Ready() bool                 { return f.ready }
func (f *fakeServer) Access() Access              { return f.access }
func (f *fakeServer) Predecessors() []Predecessor { return f.preds }

func newFake(t *testing.T) *fakeServer {
	t.Helper()
	p, err := pool.New(pool.Config{Nodes: []pool.NodeConfig{{Name: "CB_Server_1", URL: "http://127.0.0.1:1"}}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &fakeServer{p: p, ready: true, counters: Counters{Started: time.Unix(1e9, 0), ClientConns: 3}}
}

// get sends method path to f's endpoints as an operator on loopback would, with the
// Authorization header auth (none when empty).
func get(f *fakeServer, method, path, auth string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://127.0.0.1:9090"+path, nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	Handler(f, false, zerolog.Nop(), zerolog.Nop()).ServeHTTP(w, r)
	return w
}

// TestEndpointsReadTheServer: every endpoint answers from what the Server
// gives: readiness, counters, nodes and the node actions, and the guard
// checks the Access of each request.
func TestEndpointsReadTheServer(t *testing.T) {
	f := newFake(t)
	f.counters.MaxConnsRefused = 7
	f.counters.Refused[1] = 2 // 408

	if w := get(f, "GET", "/healthz", ""); w.Code != 200 {
		t.Errorf("/healthz while ready: %d", w.Code)
	}
	f.ready = false
	if w := get(f, "GET", "/healthz", ""); w.Code != 503 {
		t.Errorf("/healthz while draining: %d, want 503", w.Code)
	}
	if w := get(f, "GET", "/livez", ""); w.Code != 200 {
		t.Errorf("/livez while draining: %d, want 200", w.Code)
	}

	var st Status
	if w := get(f, "GET", "/status", ""); w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &st) != nil {
		t.Fatalf("/status: %d %q", w.Code, w.Body.String())
	}
	if st.Conns != 3 || !st.Started.Equal(f.counters.Started) || len(st.Nodes) != 1 || st.Nodes[0].ID != "CB_Server_1" {
		t.Errorf("/status = %+v", st)
	}
	body := get(f, "GET", "/metrics", "").Body.String()
	for _, want := range []string{
		"tether_client_connections 3\n",
		`tether_refused_connections_total{reason="max_conns"} 7` + "\n",
		`tether_refused_total{reason="408"} 2` + "\n",
		`tether_node_websocket_sessions{node="CB_Server_1"} 0` + "\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
	if strings.Contains(body, "tether_tls_handshakes") {
		t.Error("/metrics has TLS handshakes without a TLS listener")
	}

	if w := get(f, "POST", "/nodes/CB_Server_1/drain", ""); w.Code != 200 || f.p.Node("CB_Server_1").State() != pool.StateDraining {
		t.Errorf("drain: %d, node %s", w.Code, f.p.Node("CB_Server_1").State())
	}
	if w := get(f, "POST", "/nodes/CB_Nobody/drain", ""); w.Code != 404 {
		t.Errorf("drain of an unknown node: %d, want 404", w.Code)
	}

	tok := Token(sha256.Sum256([]byte("s3cret")))
	f.access = Access{Token: &tok}
	if w := get(f, "GET", "/status", ""); w.Code != 401 {
		t.Errorf("/status without the token: %d, want 401", w.Code)
	}
	if w := get(f, "GET", "/status", "Bearer s3cret"); w.Code != 200 {
		t.Errorf("/status with the token: %d, want 200", w.Code)
	}
}
