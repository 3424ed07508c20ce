package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Node names used throughout the tests.
const (
	node1 = "CB_Server_1"
	node2 = "CB_Server_2"
)

// healthOff is appended to startTether's flags by tests that are not about
// health: with a one-hour interval the health loop sends no probe while the
// test runs (the last flag wins), so the connections and requests a node
// counts are the test's own, and a slow probe on a loaded machine cannot
// take a node out in the middle of a test.
var healthOff = []string{"--health-interval", "1h"}

// waitFor checks cond every 20ms until it holds or d has passed.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitAccess waits up to d for at least n access-log lines that match, and
// returns them. The access log is flushed every 200ms.
func (tt *tether) waitAccess(t *testing.T, n int, d time.Duration, match func(map[string]any) bool) []map[string]any {
	t.Helper()
	var got []map[string]any
	ok := waitFor(d, func() bool {
		got = got[:0]
		for _, l := range tt.accessLines(t) {
			if match(l) {
				got = append(got, l)
			}
		}
		return len(got) >= n
	})
	if !ok {
		t.Fatalf("want %d matching access-log lines within %v, got %d; log:\n%s", n, d, len(got), tail(tt.stdout.String(), 3000))
	}
	return got
}

// pathIs matches access-log lines of one request target.
func pathIs(p string) func(map[string]any) bool {
	return func(l map[string]any) bool { return l["path"] == p }
}

// num reads a JSON number field of an access-log line.
func num(l map[string]any, k string) int64 {
	f, _ := l[k].(float64)
	return int64(f)
}

// expectClosed checks that tether closes c within d and sends nothing more.
func expectClosed(t *testing.T, c *rawConn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	var buf [256]byte
	n, err := c.br.Read(buf[:])
	if n > 0 {
		t.Fatalf("want the connection closed, read %q", buf[:n])
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("connection still open %v after the answer", d)
	default:
		t.Fatalf("want EOF, got %v", err)
	}
}

// withDeadline sets c's deadline d from now.
func (c *rawConn) withDeadline(d time.Duration) *rawConn {
	c.SetDeadline(time.Now().Add(d))
	return c
}

// write sends raw bytes.
func (c *rawConn) write(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// rssBytes is the resident set size of process pid, from /proc.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			t.Fatalf("VmRSS %q: %v", rest, err)
		}
		return kb << 10
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// straySink is a listener that no configured node uses: tether must never
// connect to it, whatever a client names.
type straySink struct {
	ln       net.Listener
	accepted chan struct{}
}

func startStray(t *testing.T) *straySink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &straySink{ln: ln, accepted: make(chan struct{}, 64)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			select {
			case s.accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *straySink) addr() string { return s.ln.Addr().String() }
