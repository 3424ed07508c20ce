package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tether-lb/tether/proxy/internal/sockio/sockiotest"
	"go.uber.org/goleak"
)

func TestWaitReadable(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	lb := sockiotest.NewPairs(t)
	cases := []struct {
		name string
		// peer acts on the far end before the wait; then the wait must
		// return wantWait and the next Read wantRead.
		peer     func(t *testing.T, peer *net.TCPConn)
		wantWait error
		wantRead error
	}{
		{"bytes already queued", peerWritesByte, nil, nil},
		{"end of stream", func(t *testing.T, p *net.TCPConn) { p.CloseWrite() }, nil, io.EOF},
		{"reset", func(t *testing.T, p *net.TCPConn) { p.SetLinger(0); p.Close() }, nil, syscall.ECONNRESET},
		{"nothing before the deadline", func(*testing.T, *net.TCPConn) {}, os.ErrDeadlineExceeded, os.ErrDeadlineExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			peer, c := lb.Pair(t)
			defer peer.Close()
			defer c.Close()
			tc.peer(t, peer)
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			// Twice: a wait consumes nothing, so it returns at once again.
			for range 2 {
				if err := WaitReadable(c); !errors.Is(err, tc.wantWait) || (tc.wantWait == nil && err != nil) {
					t.Fatalf("WaitReadable = %v, want %v", err, tc.wantWait)
				}
			}
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := c.Read(make([]byte, 8))
			if tc.wantRead == nil && (n != 1 || err != nil) || tc.wantRead != nil && !errors.Is(err, tc.wantRead) {
				t.Errorf("Read after the wait = %d, %v; want the byte or %v", n, err, tc.wantRead)
			}
		})
	}
}

func peerWritesByte(t *testing.T, p *net.TCPConn) {
	if _, err := p.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
}

func TestWaitReadableWakes(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	lb := sockiotest.NewPairs(t)
	cases := []struct {
		name    string
		act     func(peer, c *net.TCPConn)
		wantErr error
	}{
		{"bytes arrive", func(peer, _ *net.TCPConn) { peer.Write([]byte{'x'}) }, nil},
		{"closed while waiting", func(_, c *net.TCPConn) { c.Close() }, net.ErrClosed},
		{"deadline moved into the past", func(_, c *net.TCPConn) { c.SetReadDeadline(time.Unix(1, 0)) }, os.ErrDeadlineExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			peer, c := lb.Pair(t)
			defer peer.Close()
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(sockiotest.Bound))
			waited := make(chan error, 1)
			go waitInto(c, waited)
			tc.act(peer, c)
			select {
			case err := <-waited:
				if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
					t.Errorf("WaitReadable = %v, want %v", err, tc.wantErr)
				}
			case <-time.After(sockiotest.Bound):
				t.Fatal("WaitReadable did not wake")
			}
		})
	}
}

func waitInto(c net.Conn, done chan<- error) { done <- WaitReadable(c) }

func TestWaitReadableUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, err := net.DialUnix("unix", nil, ln.Addr().(*net.UnixAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if err := WaitReadable(a); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("empty unix socket: %v, want the deadline", err)
	}
	d.Write([]byte("x"))
	a.SetReadDeadline(time.Now().Add(sockiotest.Bound))
	if err := WaitReadable(a); err != nil {
		t.Fatal(err)
	}
}

func TestWaitReadableNoDescriptor(t *testing.T) {
	// net.Pipe has no socket to watch: the wait returns at once and the
	// caller's Read does the waiting.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if err := WaitReadable(a); err != nil {
		t.Fatal(err)
	}
}

func TestWaitHangup(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	lb := sockiotest.NewPairs(t)
	for _, tc := range []struct {
		name    string
		peer    func(t *testing.T, peer *net.TCPConn)
		want    bool
		wantErr error
	}{
		{"bytes only", peerWritesByte, false, os.ErrDeadlineExceeded},
		{"end of stream", func(t *testing.T, p *net.TCPConn) { p.CloseWrite() }, true, nil},
		{"bytes then close", func(t *testing.T, p *net.TCPConn) { peerWritesByte(t, p); p.Close() }, true, nil},
		{"reset", func(t *testing.T, p *net.TCPConn) { p.SetLinger(0); p.Close() }, true, nil},
		{"nothing before the deadline", func(*testing.T, *net.TCPConn) {}, false, os.ErrDeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peer, c := lb.Pair(t)
			defer peer.Close()
			defer c.Close()
			tc.peer(t, peer)
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			got, err := WaitHangup(c)
			if got != tc.want || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("WaitHangup = %v, %v; want %v, %v", got, err, tc.want, tc.wantErr)
			}
			if tc.name == "bytes only" { // nothing was consumed
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if n, err := c.Read(make([]byte, 8)); n != 1 || err != nil {
					t.Fatalf("Read after the wait = %d, %v; want the byte", n, err)
				}
			}
		})
	}
	// Bytes and then a hang-up while it waits: the hang-up wakes it.
	peer, c := lb.Pair(t)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	time.AfterFunc(50*time.Millisecond, func() { peer.Write([]byte("x")) })
	time.AfterFunc(100*time.Millisecond, func() { peer.Close() })
	start := time.Now()
	if hup, err := WaitHangup(c); !hup || err != nil || time.Since(start) > 2*time.Second {
		t.Fatalf("a hang-up after bytes, during the wait: %v, %v after %v", hup, err, time.Since(start))
	}
	// Closing the conn ends the wait with net.ErrClosed.
	peer2, c2 := lb.Pair(t)
	defer peer2.Close()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	time.AfterFunc(50*time.Millisecond, func() { c2.Close() })
	if hup, err := WaitHangup(c2); hup || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("closed during the wait: %v, %v; want false, net.ErrClosed", hup, err)
	}
}
