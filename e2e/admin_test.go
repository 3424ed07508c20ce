package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// adminReq sends one request to the admin listener with the given headers
// (a "Host" entry sets the Host) and returns the status, the headers and
// the body.
func adminReq(t *testing.T, method, url string, headers map[string]string, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, string(b)
}

// TestAdminOffLoopbackNeedsToken: an --admin address that is not loopback
// without --admin-token-file, or a token file that is empty or cannot be
// read, stops tether at start: exit 2 and one line saying why.
func TestAdminOffLoopbackNeedsToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.token")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.token")
	node := []string{"--listen", "127.0.0.1:0", "--node", "A=http://127.0.0.1:1"}
	cases := []struct {
		name  string
		args  []string
		words []string
	}{
		{"IPv4 any", []string{"--admin", "0.0.0.0:0"}, []string{"--admin 0.0.0.0:0", "loopback", "--admin-token-file"}},
		{"IPv6 any", []string{"--admin", "[::]:0"}, []string{"--admin [::]:0", "--admin-token-file"}},
		{"no host", []string{"--admin", ":0"}, []string{"--admin :0", "--admin-token-file"}},
		{"empty token file", []string{"--admin", "0.0.0.0:0", "--admin-token-file", empty}, []string{"--admin-token-file " + empty, "empty"}},
		{"missing token file", []string{"--admin-token-file", missing}, []string{"--admin-token-file " + missing}},
		{"admin-hosts with a port", []string{"--admin-hosts", "admin.example:9090"}, []string{"--admin-hosts", "admin.example:9090"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runTether(t, append(node, tc.args...)...)
			if code != 2 || stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2 and one line on stderr", code, stdout, stderr)
			}
			line := strings.TrimSuffix(stderr, "\n")
			if line == "" || strings.Contains(line, "\n") {
				t.Fatalf("stderr %q: want exactly one line", stderr)
			}
			for _, w := range tc.words {
				if !strings.Contains(line, w) {
					t.Errorf("stderr %q does not say %q", line, w)
				}
			}
		})
	}
}

// TestAdminTokenHostAndCrossSite runs tether with --admin-token-file and
// --admin-hosts: every path but /healthz needs the token; a foreign Host
// gets 421; a browser's cross-site POST does not drain a node; SIGHUP
// re-reads a rotated token.
func TestAdminTokenHostAndCrossSite(t *testing.T) {
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	token := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(token, []byte("first-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tt := startTether(t, []*testNode{n1, n2}, append(healthOff, "--admin-token-file", token, "--admin-hosts", "tether-admin.example")...)
	admin := "http://" + tt.adminAddr(t)
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

	if code, _, body := adminReq(t, "GET", admin+"/healthz", nil, ""); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz without a token: %d %q, want 200 ok", code, body)
	}
	for _, path := range []string{"/status", "/metrics", "/status?format=html"} {
		code, h, body := adminReq(t, "GET", admin+path, nil, "")
		if code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || strings.Contains(body, node1) {
			t.Errorf("GET %s without a token: %d %q %q, want 401 with a Bearer challenge", path, code, h.Get("WWW-Authenticate"), body)
		}
		if code, _, _ := adminReq(t, "GET", admin+path, bearer("first-token"), ""); code != 200 {
			t.Errorf("GET %s with the token: %d", path, code)
		}
		code, _, body = adminReq(t, "GET", admin+path, map[string]string{"Host": "rebind.evil.example", "Authorization": "Bearer first-token"}, "")
		if code != 421 || strings.Contains(body, node1) {
			t.Errorf("GET %s with a foreign Host: %d %q, want 421 and no data", path, code, body)
		}
		if code, _, _ := adminReq(t, "GET", admin+path, map[string]string{"Host": "tether-admin.example:9090", "Authorization": "Bearer first-token"}, ""); code != 200 {
			t.Errorf("GET %s with an --admin-hosts name: %d", path, code)
		}
	}

	// The form post a page on another site makes the operator's browser send.
	crossSite := map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site",
		"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Bearer first-token"}
	if code, _, body := adminReq(t, "POST", admin+"/nodes/"+node1+"/drain", crossSite, "x=1"); code != 403 {
		t.Fatalf("cross-site drain: %d %q, want 403", code, body)
	}
	var st statusBody
	_, _, body := adminReq(t, "GET", admin+"/status", bearer("first-token"), "")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if state, _ := st.node(node1); state != "up" {
		t.Fatalf("after a refused cross-site drain the node is %q", state)
	}
	if code, _, _ := adminReq(t, "POST", admin+"/nodes/"+node1+"/drain", bearer("first-token"), ""); code != 200 {
		t.Fatalf("curl -XPOST drain with the token: %d", code)
	}

	// Rotation: the new token works after SIGHUP, the old one no longer.
	if err := os.WriteFile(token, []byte("second-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tt.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitFor(3*time.Second, func() bool {
		code, _, _ := adminReq(t, "GET", admin+"/status", bearer("second-token"), "")
		return code == 200
	}) {
		t.Fatalf("the rotated token never passed:\n%s", tail(tt.stderr.String(), 2000))
	}
	if code, _, _ := adminReq(t, "GET", admin+"/status", bearer("first-token"), ""); code != 401 {
		t.Fatalf("the old token after rotation: %d, want 401", code)
	}
}

// scrapeMetrics fetches /metrics, checks it answers 200 and parses it with
// Prometheus' own text parser.
func scrapeMetrics(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	code, _, body := adminReq(t, "GET", admin+"/metrics", nil, "")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, tail(body, 2000))
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mf, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return mf
}

// nodeSample returns the value of family name's sample whose labels are
// exactly want, and whether there is one.
func nodeSample(mf map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	for _, m := range mf[name].GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				match = false
			}
		}
		if match {
			return m.GetCounter().GetValue() + m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestReloadNodeURLThenScrape: SIGHUP with a node's URL changed leaves the
// old copy draining beside the new one; /metrics still answers 200 and
// parses, the live node's series keep their labels (and count its traffic),
// the draining copy's carry generation="0"; /status tells the two apart.
func TestReloadNodeURLThenScrape(t *testing.T) {
	n1, n2, n2new := startNode(t, node1, 0), startNode(t, node2, 0), startNode(t, node2, 0)
	path := filepath.Join(t.TempDir(), "tether.yaml")
	writeConfig(t, path, []*testNode{n1, n2}, "drain-timeout: 30s\nhealth-interval: 1h\n")
	tt := startTether(t, nil, "--config", path)
	admin := "http://" + tt.adminAddr(t)
	c := dialRaw(t, tt.addr)
	for range 3 {
		c.do(t, get("/cobrowse/before", "Cookie: gcbSessionServer="+node2+"\r\n"))
	}
	scrapeMetrics(t, admin)

	writeConfig(t, path, []*testNode{n1, n2new}, "drain-timeout: 30s\nhealth-interval: 1h\n")
	if err := tt.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitFor(3*time.Second, func() bool { return strings.Contains(tt.stderr.String(), "configuration reloaded") }) {
		t.Fatalf("no reload logged:\n%s", tail(tt.stderr.String(), 2000))
	}
	for range 3 {
		if r := c.do(t, get("/cobrowse/after", "Cookie: gcbSessionServer="+node2+"\r\n")); r.status != 200 || r.get("X-Node") != node2 {
			t.Fatalf("sticky request after the reload: %d from %q", r.status, r.get("X-Node"))
		}
	}

	// An answer is counted once it is written: the last one's count may
	// land just after the client read it.
	var mf map[string]*dto.MetricFamily
	waitFor(3*time.Second, func() bool {
		mf = scrapeMetrics(t, admin)
		cur, _ := nodeSample(mf, "tether_node_requests_total", map[string]string{"node": node2, "code": "2xx"})
		return cur >= 3
	})
	for _, tc := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"node": node2, "state": "up"}, 1},
		{map[string]string{"node": node2, "state": "draining", "generation": "0"}, 1},
		{map[string]string{"node": node1, "state": "up"}, 1},
	} {
		if v, ok := nodeSample(mf, "tether_node_state", tc.labels); !ok || v != tc.want {
			t.Errorf("tether_node_state%v = %v (found %v), want %v", tc.labels, v, ok, tc.want)
		}
	}
	// The name goes to the new copy at once; the draining one keeps its count.
	old, _ := nodeSample(mf, "tether_node_requests_total", map[string]string{"node": node2, "code": "2xx", "generation": "0"})
	cur, _ := nodeSample(mf, "tether_node_requests_total", map[string]string{"node": node2, "code": "2xx"})
	if old != 3 || cur != 3 {
		t.Errorf("2xx answers from %s: %v from the draining copy, %v from the live one; want 3 and 3", node2, old, cur)
	}

	var st struct {
		Nodes []struct {
			ID, Name, Addr, State string
			Removed               bool
		} `json:"nodes"`
	}
	_, _, body := adminReq(t, "GET", admin+"/status", nil, "")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, n := range st.Nodes {
		got[n.ID] = fmt.Sprintf("%s %s %s removed=%v", n.Name, n.Addr, n.State, n.Removed)
	}
	want := map[string]string{
		node1:        fmt.Sprintf("%s %s up removed=false", node1, n1.addr),
		node2:        fmt.Sprintf("%s %s draining removed=true", node2, n2.addr),
		node2 + "@1": fmt.Sprintf("%s %s up removed=false", node2, n2new.addr),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("/status after the reload:\n got %v\nwant %v", got, want)
	}
}
