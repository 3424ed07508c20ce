package sockio

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/tether-lb/tether/proxy/internal/sockio/sockiotest"
)

// TestDeadlineConnRawIO checks that a DeadlineConn over a TCP conn (raw
// system calls on Linux) reads and writes as net.Conn does: whole writes
// past the socket buffers, end of stream, deadlines, a reset, a closed conn.
func TestDeadlineConnRawIO(t *testing.T) {
	lb := sockiotest.NewPairs(t)
	a, b := lb.Pair(t)
	defer a.Close()
	defer b.Close()
	var d DeadlineConn
	d.Reset(a, RawConnOf(a), 2*time.Second, 2*time.Second)
	if got := d.Raw.Use(); got != (runtime.GOOS == "linux") {
		t.Fatalf("raw I/O in use: %v on %s", got, runtime.GOOS)
	}

	// 8 MiB in one Write: far past the socket buffers, so the write waits
	// for the reader again and again.
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(rand.Uint32())
	}
	got := make(chan []byte, 1)
	go func() {
		b.SetReadDeadline(time.Now().Add(10 * time.Second))
		p, _ := io.ReadAll(io.LimitReader(b, int64(len(want))))
		got <- p
	}()
	if n, err := d.Write(want); n != len(want) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(want))
	}
	if p := <-got; !bytes.Equal(p, want) {
		t.Fatalf("the reader got %d bytes, not the ones written", len(p))
	}

	// Reads: bytes as they come, then io.EOF once the peer shuts its side.
	if _, err := b.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 64)
	if n, err := d.Read(p); err != nil || string(p[:n]) != "hello" {
		t.Fatalf("Read = %q, %v", p[:n], err)
	}
	if n, err := d.Read(p[:0]); n != 0 || err != nil {
		t.Fatalf("empty Read = %d, %v", n, err)
	}

	// A read past its deadline fails as a timeout.
	d.SetReadLimit(20 * time.Millisecond)
	_, err := d.Read(p)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past its deadline: %v; want a timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" || oe.Addr == nil {
		t.Fatalf("Read error %#v is not a *net.OpError naming the peer", err)
	}
	if want := "read tcp " + a.LocalAddr().String() + "->" + a.RemoteAddr().String() + ": i/o timeout"; err.Error() != want {
		t.Fatalf("Read error says %q, want %q (as net.Conn's)", err, want)
	}
	d.SetReadTimeout(2 * time.Second)

	b.CloseWrite()
	if n, err := d.Read(p); n != 0 || err != io.EOF {
		t.Fatalf("Read at end of stream = %d, %v; want 0, io.EOF", n, err)
	}

	// A reset by the peer shows as ECONNRESET on the next write or read.
	b.SetLinger(0)
	b.Close()
	time.Sleep(20 * time.Millisecond)
	for range 100 { // the first write after a reset may still succeed
		if _, err = d.Write([]byte("x")); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("Write after the peer reset: %v; want ECONNRESET or EPIPE", err)
	}

	// Closed under a blocked Read: net.ErrClosed.
	c, e := lb.Pair(t)
	defer e.Close()
	d.Reset(c, RawConnOf(c), 5*time.Second, 5*time.Second)
	done := make(chan error, 1)
	go func() {
		_, err := d.Read(p)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed conn: %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not end when its conn closed")
	}
}

// TestRawTCPReadWhileWriting reads and writes one conn from WithRawIO at
// the same time, as a splice's two copiers do: the echoed bytes must come
// back whole (reads and writes keep separate state).
func TestRawTCPReadWhileWriting(t *testing.T) {
	lb := sockiotest.NewPairs(t)
	a, b := lb.Pair(t)
	defer b.Close()
	c := WithRawIO(a)
	defer c.Close()
	if _, raw := c.(*RawTCP); raw != (runtime.GOOS == "linux") {
		t.Fatalf("WithRawIO gave %T on %s", c, runtime.GOOS)
	}
	go io.Copy(b, b) // the echo: ends when c closes
	c.SetDeadline(time.Now().Add(20 * time.Second))

	want := make([]byte, 4<<20)
	for i := range want {
		want[i] = byte(rand.Uint32())
	}
	werr := make(chan error, 1)
	go func() {
		for p := want; len(p) > 0; p = p[min(len(p), 1500):] { // many writes, each racing the reads
			if _, err := c.Write(p[:min(len(p), 1500)]); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the echo differs from what was written")
	}
}
