package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	load := &steady{addr: tt.addr, path: "/cobrowse/steady", extra: "Cookie: gcbSessionServer=" + node1 + "\r\n", want: node1, keepAlive: true}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { load.run(stop) })
	defer func() {
		close(stop)
		wg.Wait()
		if f := load.failed.Load(); f > 0 || load.ok.Load() < 20 {
			t.Errorf("load on the kept node across the reload: %d ok, %d failed (first: %v)", load.ok.Load(), f, load.firstErr.Load())
		}
	}()
	if !waitFor(3*time.Second, func() bool { return load.ok.Load() >= 5 }) {
		t.Fatalf("no steady load before the reload: %d ok, %d failed (first: %v)", load.ok.Load(), load.failed.Load(), load.firstErr.Load())
	}

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
