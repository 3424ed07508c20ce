package e2e

import (
	"io"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProxyProtocol: with --proxy-protocol, the address of a client's PROXY
// protocol header is the access log's remote; a client without one is
// closed, counted in /metrics, and the readiness probe of startTether (a
// connection closed before its first byte, as a TCP health check) is not.
func TestProxyProtocol(t *testing.T) {
	n1 := startNode(t, node1, 0)
	tt := startTether(t, []*testNode{n1}, append(healthOff, "--proxy-protocol", "--proxy-protocol-from", "127.0.0.0/8,::1")...)
	admin := "http://" + tt.adminAddr(t)

	c := dialRaw(t, tt.addr)
	r := c.do(t, "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n"+get("/cobrowse/resource?bytes=10", ""))
	if r.status != 200 || r.get("X-Node") != node1 {
		t.Fatalf("through the header: %d from %q, want 200 from %s", r.status, r.get("X-Node"), node1)
	}
	lines := tt.waitAccess(t, 1, 3*time.Second, pathIs("/cobrowse/resource?bytes=10"))
	if got := lines[0]["remote"]; got != "203.0.113.7" {
		t.Fatalf("access log remote %v, want the header's 203.0.113.7", got)
	}

	bare := dialRaw(t, tt.addr)
	if _, err := io.WriteString(bare, get("/cobrowse/resource?bytes=10", "")); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, bare, 5*time.Second)
	want := `tether_refused_connections_total{reason="proxy_protocol"} 1`
	var body string
	if !waitFor(3*time.Second, func() bool {
		_, body = adminDo(t, "GET", admin+"/metrics", "", nil)
		return strings.Contains(body, want)
	}) {
		t.Fatalf("/metrics lacks %s", want)
	}
}

// TestDrainDelay: on SIGTERM with --drain-delay, /healthz answers 503 at
// once and /livez 200, while tether still accepts and answers for the
// delay; then it drains and exits 0.
func TestDrainDelay(t *testing.T) {
	n1 := startNode(t, node1, 0)
	tt := startTether(t, []*testNode{n1}, append(healthOff, "--drain-delay", "3s", "--drain-timeout", "2s")...)
	admin := "http://" + tt.adminAddr(t)
	if st, _ := adminDo(t, "GET", admin+"/healthz", "", nil); st != 200 {
		t.Fatalf("/healthz before SIGTERM: %d", st)
	}
	sent := time.Now()
	if err := tt.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !waitFor(time.Second, func() bool { st, _ := adminDo(t, "GET", admin+"/healthz", "", nil); return st == 503 }) {
		t.Fatal("/healthz did not answer 503 within a second of SIGTERM")
	}
	if st, _ := adminDo(t, "GET", admin+"/livez", "", nil); st != 200 {
		t.Fatalf("/livez during the drain delay: %d, want 200", st)
	}
	c := dialRaw(t, tt.addr) // a new connection, after SIGTERM
	r := c.do(t, get("/cobrowse/resource?bytes=10", ""))
	if r.status != 200 {
		t.Fatalf("request during the drain delay: %d, want 200", r.status)
	}
	if d := time.Since(sent); d > 2500*time.Millisecond {
		t.Fatalf("checks took %v, past the drain delay: the test proves nothing", d)
	}
	select {
	case <-tt.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("tether did not exit after the drain delay and timeout")
	}
	if d := time.Since(sent); d < 3*time.Second {
		t.Fatalf("exited %v after SIGTERM, before the 3s drain delay", d)
	}
	if st := tt.cmd.ProcessState; st == nil || !st.Success() {
		t.Fatalf("exit status %v, want 0", st)
	}
}
