package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/proxy/internal/admin"
)

// TestPredecessorsShown: the older processes SetPredecessors names appear
// in /status (JSON and page) and /metrics (which parses, a PID given twice
// included), and leave them when the list empties.
func TestPredecessorsShown(t *testing.T) {
	s, err := New(nodesCfg("A=http://127.0.0.1:1"), zerolog.Nop(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	h := s.AdminHandler()
	var st admin.Status
	if body := adminGet(t, h, "/status").Body.String(); !strings.Contains(body, `"predecessors": []`) {
		t.Fatalf("/status without predecessors: %s", body)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s.SetPredecessors([]Predecessor{
		{PID: 4242, Version: "v1.2.3", Occupancy: Occupancy{Conns: 3, Sessions: 7, TLSSessions: 5, InFlight: 1}, Updated: at},
		{PID: 4100, Version: "v1.2.2", Occupancy: Occupancy{Sessions: 2, TLSSessions: 2}, Updated: at},
		{PID: 4242, Version: "v1.2.3", Occupancy: Occupancy{Sessions: 99}, Updated: at}, // relayed twice: the first counts
	})
	if err := json.Unmarshal(adminGet(t, h, "/status").Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Predecessors) != 2 || st.Predecessors[0].PID != 4242 || st.Predecessors[0].Sessions != 7 || st.Predecessors[0].TLSSessions != 5 || !st.Predecessors[0].Updated.Equal(at) || st.Predecessors[1].Version != "v1.2.2" {
		t.Fatalf("/status predecessors %+v", st.Predecessors)
	}
	mf := scrape(t, h)
	want := map[string]map[string]float64{
		"tether_predecessor_sessions":           {"4242": 7, "4100": 2},
		"tether_predecessor_tls_sessions":       {"4242": 5, "4100": 2},
		"tether_predecessor_connections":        {"4242": 3, "4100": 0},
		"tether_predecessor_requests_in_flight": {"4242": 1, "4100": 0},
	}
	for name, byPID := range want {
		f := mf[name]
		if f == nil || len(f.GetMetric()) != len(byPID) {
			t.Fatalf("%s: %v", name, f)
		}
		for _, m := range f.GetMetric() {
			pid := m.GetLabel()[0].GetValue()
			if v := m.GetGauge().GetValue(); v != byPID[pid] {
				t.Errorf("%s{pid=%q} = %v, want %v", name, pid, v, byPID[pid])
			}
		}
	}
	page := adminGet(t, h, "/status?format=html").Body.String()
	if !strings.Contains(page, `<td class="num">4242</td><td>v1.2.3</td>`) || strings.Contains(page, `id="preds-box" hidden`) {
		t.Fatal("the status page does not show the older processes")
	}
	s.SetPredecessors(nil)
	if mf := scrape(t, h); mf["tether_predecessor_sessions"] != nil {
		t.Fatal("predecessor series after the list emptied")
	}
	if page := adminGet(t, h, "/status?format=html").Body.String(); !strings.Contains(page, `id="preds-box" hidden`) {
		t.Fatal("the status page shows an empty table of older processes")
	}
}

// TestOccupancy: an open idle client connection counts in Conns; nothing
// else is held.
func TestOccupancy(t *testing.T) {
	s, err := New(nodesCfg("A=http://127.0.0.1:1"), zerolog.Nop(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	if o := s.Occupancy(); o != (Occupancy{}) {
		t.Fatalf("Occupancy at start %+v", o)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.Occupancy().Conns != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if o := s.Occupancy(); o != (Occupancy{Conns: 1}) {
		t.Fatalf("Occupancy with one idle connection %+v", o)
	}
}

// TestStopAcceptingEndsAdminKeepAlive: after StopAccepting the admin
// endpoints keep no connection alive, so that an operator's (a scraper's)
// next request reaches the process that took over.
func TestStopAcceptingEndsAdminKeepAlive(t *testing.T) {
	s, err := New(nodesCfg("A=http://127.0.0.1:1"), zerolog.Nop(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeAdmin(ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	ask := func() *http.Response {
		t.Helper()
		if _, err := io.WriteString(c, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := ask(); r.Close {
		t.Fatal("the admin endpoints close a connection while serving")
	}
	s.StopAccepting()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("an idle admin connection after StopAccepting: %v, want EOF", err)
	}
}
