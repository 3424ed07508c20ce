package e2e

import (
	"bufio"
	"errors"
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
	migrating := false
	switch old, err := os.ReadFile(migrate); {
	case err != nil:
		t.Logf("mode: without %s (%v): connections in the old listener's accept queue may be reset at its close; a request on a new connection that is reset is sent again and counted apart", migrate, err)
	case strings.TrimSpace(string(old)) == "1":
		t.Logf("mode: %s is already 1: the kernel hands the old listener's queue to the new one", migrate)
		migrating = true
	default:
		if err := os.WriteFile(migrate, []byte("1"), 0o644); err != nil {
			t.Logf("mode: without %s (it is %s and cannot be set: %v; root sets it): connections in the old listener's accept queue may be reset at its close; a request on a new connection that is reset is sent again and counted apart", migrate, strings.TrimSpace(string(old)), err)
		} else {
			t.Logf("mode: %s set to 1 for this test: the kernel hands the old listener's queue to the new one", migrate)
			migrating = true
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
	for _, l := range loads {
		l.resendReset = !migrating
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, l := range loads {
		wg.Go(func() { l.run(stop) })
	}
	answered := func() (n int64) {
		for _, l := range loads {
			n += l.ok.Load()
		}
		return n
	}
	if !waitFor(5*time.Second, func() bool { return answered() >= 20 }) {
		t.Fatalf("the load got %d answers from the first tether", answered())
	}
	b := startTether(t, []*testNode{n1, n2}, append(healthOff, "--listen", a.addr)...)
	// Both serve before the first stops: the new one has answered some of
	// the load (its access log names the path).
	if !waitFor(5*time.Second, func() bool { return strings.Contains(b.stdout.String(), `"path":"/cobrowse/restart"`) }) {
		t.Fatal("the new tether served nothing beside the old one")
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.exited:
	case <-time.After(6 * time.Second):
		t.Fatal("old tether did not exit")
	}
	// Load on the new one alone: more answers after the old one exited.
	after := answered()
	if !waitFor(5*time.Second, func() bool { return answered() >= after+50 }) {
		t.Fatalf("only %d answers after the old tether exited", answered()-after)
	}
	close(stop)
	wg.Wait()
	var ok, resets int64
	for _, l := range loads {
		if f := l.failed.Load(); f > 0 {
			t.Fatalf("%d requests failed across the restart; first: %v", f, l.firstErr.Load())
		}
		ok += l.ok.Load()
		resets += l.resets.Load()
	}
	if !migrating {
		t.Logf("without %s: %d new connections reset at the old listener's close, their requests sent again", migrate, resets)
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
	// resendReset: a new connection reset before any answer (a listener
	// closed with it in its accept queue, without tcp_migrate_req) is not
	// a failure: it is counted in resets and the request sent again.
	resendReset        bool
	ok, failed, resets atomic.Int64
	firstErr           atomic.Value
}

// run sends requests until stop: several per connection (keep-alive) or one
// per connection, reconnecting when tether closes one after
// "Connection: close". Like browsers (RFC 9112 §9.3.1), it sends a request
// again on a new connection when a reused keep-alive connection was closed
// before any byte of the answer: a server may close an idle connection just
// as a request crosses it on the wire. The client then reads the end of the
// stream, or a reset when the request reached a socket already closed.
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
		if err != nil && l.resendReset && !reused && c.br.Buffered() == 0 && (errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), "EOF (read \"\")")) {
			l.resets.Add(1) // reset in the closed listener's queue: send it again
			c.Close()
			c = nil
			continue
		}
		if err != nil && reused && !retried && c.br.Buffered() == 0 && (errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), "EOF (read \"\")")) {
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
