package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// writeConfig writes a tether YAML config naming the given nodes.
func writeConfig(t *testing.T, path string, nodes []*testNode, extra string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("node:\n")
	for _, n := range nodes {
		fmt.Fprintf(&b, "  - %s=http://%s\n", n.name, n.addr)
	}
	b.WriteString(extra)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReloadAddsAndRemovesNodes: SIGHUP with a node removed and one added
// leaves the kept node's WebSockets open, sends no new session to the
// removed node, tells its clients 1001 after the drain, and a bad file
// keeps the running configuration.
func TestReloadAddsAndRemovesNodes(t *testing.T) {
	n1, n2, n3 := startNode(t, node1, 0), startNode(t, node2, 0), startNode(t, "CB_Server_3", 0)
	path := filepath.Join(t.TempDir(), "tether.yaml")
	writeConfig(t, path, []*testNode{n1, n2}, "drain-timeout: 1s\nhealth-interval: 1h\n")
	tt := startTether(t, nil, "--config", path)

	kept := openSessions(t, tt.addr, node1, 3)
	removed := openSessions(t, tt.addr, node2, 3)

	// Steady sticky load on the kept node across the reload: none may fail.
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { stickyLoad(tt.addr, node1, stop, &ok, &failed, &firstErr) })
	}
	defer func() {
		close(stop)
		wg.Wait()
		if f := failed.Load(); f > 0 || ok.Load() < 20 {
			t.Errorf("load on the kept node across the reload: %d ok, %d failed (first: %v)", ok.Load(), f, firstErr.Load())
		}
	}()
	time.Sleep(200 * time.Millisecond)

	writeConfig(t, path, []*testNode{n1, n3}, "drain-timeout: 1s\nhealth-interval: 1h\n")
	reloaded := time.Now()
	if err := tt.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitFor(3*time.Second, func() bool { return strings.Contains(tt.stderr.String(), "configuration reloaded") }) {
		t.Fatalf("no reload logged:\n%s", tail(tt.stderr.String(), 2000))
	}
	// New sessions go to the kept and the added node only (the added one
	// first: it has the fewest active sessions).
	seen := map[string]int{}
	for range 8 {
		c := dialRaw(t, tt.addr)
		seen[c.do(t, get("/cobrowse/new", "")).get("X-Node")]++
	}
	if seen[node2] > 0 || seen["CB_Server_3"] == 0 || seen[node1]+seen["CB_Server_3"] != 8 {
		t.Fatalf("new sessions after the reload: %v, want CB_Server_1 and CB_Server_3 only", seen)
	}
	// The removed node's clients are told 1001 after the 1s drain.
	codes, at := awaitClose(t, removed, 5*time.Second)
	for i, c := range codes {
		if c != 1001 {
			t.Fatalf("removed node's session %d closed with %d, want 1001", i, c)
		}
		if d := at[i].Sub(reloaded); d < 800*time.Millisecond {
			t.Fatalf("removed node's session %d told after %v, before the drain", i, d)
		}
	}
	// The kept node's sessions never noticed.
	for _, ws := range kept {
		if err := ws.WriteMessage(websocket.TextMessage, []byte("still")); err != nil {
			t.Fatal(err)
		}
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != "still" {
			t.Fatalf("kept node's session broken by the reload: %q %v", m, err)
		}
	}

	// A file that does not parse keeps the running configuration.
	if err := os.WriteFile(path, []byte("node: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tt.cmd.Process.Signal(syscall.SIGHUP)
	if !waitFor(3*time.Second, func() bool { return strings.Contains(tt.stderr.String(), "reload failed") }) {
		t.Fatal("a bad file was not reported")
	}
	c := dialRaw(t, tt.addr)
	if r := c.do(t, get("/cobrowse/x", "Cookie: gcbSessionServer=CB_Server_3\r\n")); r.get("X-Node") != "CB_Server_3" {
		t.Fatalf("after a bad reload: %d from %s, want the running configuration", r.status, r.get("X-Node"))
	}
}

// stickyLoad sends keep-alive requests sticky to node until stop; an answer
// that is not a 200 from that node is a failure.
func stickyLoad(addr, node string, stop chan struct{}, ok, failed *atomic.Int64, firstErr *atomic.Value) {
	fail := func(err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	var c net.Conn
	var br *bufio.Reader
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for {
		select {
		case <-stop:
			return
		default:
		}
		if c == nil {
			var err error
			if c, err = net.DialTimeout("tcp", addr, 2*time.Second); err != nil {
				fail(err)
				return
			}
			br = bufio.NewReader(c)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, get("/cobrowse/steady", "Cookie: gcbSessionServer="+node+"\r\n")); err != nil {
			fail(err)
			return
		}
		r, err := parseResponse(br, false)
		if err != nil || r.status != 200 || r.get("X-Node") != node {
			if err == nil {
				err = fmt.Errorf("status %d from %s", r.status, r.get("X-Node"))
			}
			fail(err)
			return
		}
		ok.Add(1)
		time.Sleep(2 * time.Millisecond)
	}
}
