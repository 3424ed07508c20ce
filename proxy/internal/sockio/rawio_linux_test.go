//go:build linux

package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/tether-lb/tether/proxy/internal/sockio/sockiotest"
)

// TestSendBeforeRead checks the request-then-answer read of RawIO: the
// bytes go out inside the read, whose answer comes back; bytes that do not
// fit the socket buffers are handed back (errPreUnsent, unsent) without loss
// or repetition; a failed write reads as a write error; a read that ends
// before trying (its deadline passed) hands all of them back.
func TestSendBeforeRead(t *testing.T) {
	lb := sockiotest.NewPairs(t)

	t.Run("request and answer", func(t *testing.T) {
		d, b := rawPair(t, lb)
		for i := range 50 { // the node answers after the request, each time
			req := []byte("GET /" + string(rune('a'+i%26)) + " HTTP/1.1\r\n\r\n")
			go func() {
				p := make([]byte, len(req))
				if _, err := io.ReadFull(b, p); err == nil && bytes.Equal(p, req) {
					time.Sleep(time.Millisecond)
					b.Write([]byte("answer"))
				}
			}()
			d.Raw.SendBeforeRead(req)
			p := make([]byte, 64)
			n, err := d.Read(p)
			if err != nil || string(p[:n]) != "answer" {
				t.Fatalf("round %d: Read = %q, %v; want the answer", i, p[:n], err)
			}
			if rest := d.Raw.Unsent(); rest != nil {
				t.Fatalf("round %d: %d bytes unsent", i, len(rest))
			}
		}
	})

	t.Run("more than the socket takes", func(t *testing.T) {
		d, b := rawPair(t, lb)
		d.Conn.(*net.TCPConn).SetWriteBuffer(16 << 10)
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
		d.Raw.SendBeforeRead(big)
		_, err := d.Read(make([]byte, 64))
		rest := d.Raw.Unsent()
		if err != errPreUnsent || len(rest) == 0 || len(rest) >= len(big) {
			t.Fatalf("Read = %v with %d of %d bytes unsent; want errPreUnsent and part unsent", err, len(rest), len(big))
		}
		got := make(chan []byte, 1)
		go func() {
			b.SetReadDeadline(time.Now().Add(10 * time.Second))
			p, _ := io.ReadAll(io.LimitReader(b, int64(len(big))))
			got <- p
		}()
		if _, err := d.Write(rest); err != nil {
			t.Fatal(err)
		}
		if p := <-got; !bytes.Equal(p, big) {
			t.Fatalf("the peer got %d bytes, not the %d sent", len(p), len(big))
		}
	})

	t.Run("the peer is gone", func(t *testing.T) {
		d, b := rawPair(t, lb)
		b.SetLinger(0)
		b.Close() // a reset
		time.Sleep(20 * time.Millisecond)
		d.Raw.SendBeforeRead([]byte("GET / HTTP/1.1\r\n\r\n"))
		_, err := d.Read(make([]byte, 64))
		if rest := d.Raw.Unsent(); rest != nil {
			t.Fatalf("%d bytes unsent after %v", len(rest), err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || !PeerGone(err) {
			t.Fatalf("Read = %v; want a *net.OpError the retry logic reads as a connection gone", err)
		}
		if errors.Is(err, syscall.EPIPE) && oe.Op != "write" {
			t.Fatalf("a failed write reads as %q", oe.Op)
		}
	})

	t.Run("deadline passed before the read", func(t *testing.T) {
		d, _ := rawPair(t, lb)
		d.SetReadLimit(-time.Second)
		req := []byte("GET / HTTP/1.1\r\n\r\n")
		d.Raw.SendBeforeRead(req)
		_, err := d.Read(make([]byte, 64))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read = %v; want the deadline", err)
		}
		if rest := d.Raw.Unsent(); !bytes.Equal(rest, req) {
			t.Fatalf("unsent %q; want all of %q", rest, req)
		}
	})
}

// rawPair is a loopback pair: its first side in a DeadlineConn with raw I/O,
// the other as is. Cleanup closes both.
func rawPair(t *testing.T, lb *sockiotest.Pairs) (*DeadlineConn, *net.TCPConn) {
	a, b := lb.Pair(t)
	t.Cleanup(func() { a.Close(); b.Close() })
	d := new(DeadlineConn)
	d.Reset(a, RawConnOf(a), 5*time.Second, 5*time.Second)
	return d, b
}
