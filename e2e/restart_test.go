package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestHitlessRestart starts a second tether on the same port (SO_REUSEPORT),
// then stops the first with SIGTERM, under a steady load of new and
// kept-alive connections: no request fails and no connection is refused.
func TestHitlessRestart(t *testing.T) {
	// Closing a SO_REUSEPORT listener resets the connections still in its
	// accept queue unless the kernel hands them to a sibling listener
	// (net.ipv4.tcp_migrate_req, Linux 5.14+); the README's restart
	// procedure sets it, and so does this test when it may.
	const migrate = "/proc/sys/net/ipv4/tcp_migrate_req"
	if old, err := os.ReadFile(migrate); err == nil && strings.TrimSpace(string(old)) != "1" {
		if os.WriteFile(migrate, []byte("1"), 0o644) == nil {
			t.Cleanup(func() { os.WriteFile(migrate, old, 0o644) })
		}
	}
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	a := startTether(t, []*testNode{n1, n2}, append(healthOff, "--drain-timeout", "3s")...)

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() { restartLoad(a.addr, i%2 == 0, stop, &ok, &failed, &firstErr) })
	}
	time.Sleep(300 * time.Millisecond)
	b := startTether(t, []*testNode{n1, n2}, append(healthOff, "--listen", a.addr)...)
	time.Sleep(300 * time.Millisecond)
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.exited:
	case <-time.After(6 * time.Second):
		t.Fatal("old tether did not exit")
	}
	time.Sleep(500 * time.Millisecond) // load on the new one alone
	close(stop)
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d requests failed across the restart; first: %v", f, f+ok.Load(), firstErr.Load())
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d requests made", ok.Load())
	}
	if st := a.cmd.ProcessState; !st.Success() {
		t.Fatalf("old tether exit status %v", st)
	}
	if !strings.Contains(b.stdout.String(), `"path":"/cobrowse/restart"`) {
		t.Fatal("the new tether served nothing")
	}
}

// restartLoad sends requests until stop: each on a new connection, or
// several per connection (keep-alive), reconnecting when tether closes one
// after "Connection: close". A request that gets no complete 200 is a
// failure.
func restartLoad(addr string, keepAlive bool, stop chan struct{}, ok, failed *atomic.Int64, firstErr *atomic.Value) {
	fail := func(err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	var c *rawConnPlain
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
			nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				fail(fmt.Errorf("dial: %w", err))
				time.Sleep(10 * time.Millisecond)
				continue
			}
			c = newRawConnPlain(nc)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		extra := ""
		if !keepAlive {
			extra = "Connection: close\r\n"
		}
		if _, err := io.WriteString(c, get("/cobrowse/restart", extra)); err != nil {
			fail(fmt.Errorf("write: %w", err))
			c.Close()
			c = nil
			continue
		}
		r, err := parseResponse(c.br, false)
		if err != nil || r.status != 200 {
			if err == nil {
				err = fmt.Errorf("status %d", r.status)
			}
			fail(err)
			c.Close()
			c = nil
			continue
		}
		ok.Add(1)
		if !keepAlive || r.get("Connection") == "close" {
			c.Close()
			c = nil
		}
	}
}

// rawConnPlain is a raw client connection usable off the test goroutine.
type rawConnPlain struct {
	net.Conn
	br *bufio.Reader
}

func newRawConnPlain(c net.Conn) *rawConnPlain {
	return &rawConnPlain{Conn: c, br: bufio.NewReader(c)}
}
