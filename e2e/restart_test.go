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

	loads := []*steady{
		{addr: a.addr, path: "/cobrowse/restart", keepAlive: true},
		{addr: a.addr, path: "/cobrowse/restart", keepAlive: true},
		{addr: a.addr, path: "/cobrowse/restart"},
		{addr: a.addr, path: "/cobrowse/restart"},
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, l := range loads {
		wg.Go(func() { l.run(stop) })
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
	var ok int64
	for _, l := range loads {
		if f := l.failed.Load(); f > 0 {
			t.Fatalf("%d requests failed across the restart; first: %v", f, l.firstErr.Load())
		}
		ok += l.ok.Load()
	}
	if ok < 100 {
		t.Fatalf("only %d requests made", ok)
	}
	if st := a.cmd.ProcessState; !st.Success() {
		t.Fatalf("old tether exit status %v", st)
	}
	if !strings.Contains(b.stdout.String(), `"path":"/cobrowse/restart"`) {
		t.Fatal("the new tether served nothing")
	}
}

// steady is a load that counts answers: a request that gets no complete 200
// (from want, when set) is a failure.
type steady struct {
	addr, path, extra, want string
	keepAlive               bool
	ok, failed              atomic.Int64
	firstErr                atomic.Value
}

// run sends requests until stop: several per connection (keep-alive) or one
// per connection, reconnecting when tether closes one after
// "Connection: close". Like browsers (RFC 9112 §9.3.1), it sends a request
// again on a new connection when a reused keep-alive connection was closed
// before any byte of the answer: a server may close an idle connection just
// as a request crosses it on the wire.
func (l *steady) run(stop chan struct{}) {
	fail := func(err error) {
		l.failed.Add(1)
		l.firstErr.CompareAndSwap(nil, err)
	}
	var c *rawConnPlain
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	extra := l.extra
	if !l.keepAlive {
		extra += "Connection: close\r\n"
	}
	reused, retried := false, false
	for {
		select {
		case <-stop:
			return
		default:
		}
		if c == nil {
			nc, err := net.DialTimeout("tcp", l.addr, 2*time.Second)
			if err != nil {
				fail(fmt.Errorf("dial: %w", err))
				time.Sleep(10 * time.Millisecond)
				continue
			}
			c = newRawConnPlain(nc)
			reused = false
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, get(l.path, extra)); err != nil {
			fail(fmt.Errorf("write: %w", err))
			c.Close()
			c = nil
			continue
		}
		r, err := parseResponse(c.br, false)
		if err != nil && reused && !retried && c.br.Buffered() == 0 && strings.Contains(err.Error(), "EOF (read \"\")") {
			retried = true // closed while idle: send it again on a new connection
			c.Close()
			c = nil
			continue
		}
		if err == nil && (r.status != 200 || l.want != "" && r.get("X-Node") != l.want) {
			err = fmt.Errorf("status %d from %s", r.status, r.get("X-Node"))
		}
		if err != nil {
			fail(err)
			c.Close()
			c = nil
			continue
		}
		l.ok.Add(1)
		reused, retried = true, false
		if !l.keepAlive || r.get("Connection") == "close" {
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
