//go:build linux

package sockio

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/tether-lb/tether/proxy/internal/sockio/sockiotest"
)

// TestLazyDeadlines checks DeadlineConn's lazy mode: a read that finds its
// bytes, or a write that fits, succeeds whatever deadline the socket still
// carries (one long passed included); TryNext makes a read on an empty
// socket return ErrWouldBlock at once; a read or write that must wait does
// so under the deadline its timeout calls for, and ends on it.
func TestLazyDeadlines(t *testing.T) {
	lb := sockiotest.NewPairs(t)
	past := time.Unix(1, 0)

	t.Run("read past a passed deadline", func(t *testing.T) {
		d, b := rawPair(t, lb)
		d.SetLazy()
		d.Conn.SetReadDeadline(past)
		b.Write([]byte("hello"))
		p := make([]byte, 16)
		if n, err := d.Read(p); err != nil || string(p[:n]) != "hello" {
			t.Fatalf("read %q, %v; want hello", p[:n], err)
		}
		if d.Full() {
			t.Error("Full after a read that did not fill its buffer")
		}
	})
	t.Run("TryNext on an empty socket", func(t *testing.T) {
		d, _ := rawPair(t, lb)
		d.SetLazy()
		d.Conn.SetReadDeadline(past)
		d.TryNext()
		if _, err := d.Read(make([]byte, 16)); err != ErrWouldBlock {
			t.Fatalf("read: %v; want ErrWouldBlock", err)
		}
	})
	t.Run("a read that waits ends on its limit", func(t *testing.T) {
		d, _ := rawPair(t, lb)
		d.SetLazy()
		d.SetReadLimit(50 * time.Millisecond)
		from := time.Now()
		_, err := d.Read(make([]byte, 16))
		if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(from) > 5*time.Second {
			t.Fatalf("read: %v after %s; want the 50ms limit's timeout", err, time.Since(from))
		}
	})
	t.Run("a write that waits ends on its timeout", func(t *testing.T) {
		d, _ := rawPair(t, lb)
		d.Reset(d.Conn, RawConnOf(d.Conn), time.Second, 100*time.Millisecond)
		d.SetLazy()
		d.Conn.SetWriteDeadline(past)
		if _, err := d.Write([]byte("fits")); err != nil {
			t.Fatalf("a write that fits: %v", err)
		}
		big := make([]byte, 64<<20) // the peer never reads
		n, err := d.Write(big)
		if !errors.Is(err, os.ErrDeadlineExceeded) || n == 0 || n == len(big) {
			t.Fatalf("write: %d bytes, %v; want part of it and the timeout", n, err)
		}
	})
}

// TestReadDeadlinesGoWithTheRead checks that outside lazy mode too,
// SetReadLimit and SetReadTimeout leave the socket's deadline alone until
// the next read (bytes already buffered above the socket cost no deadline
// update), and that this read then carries the deadline they call for,
// whatever was set on the socket meanwhile.
func TestReadDeadlinesGoWithTheRead(t *testing.T) {
	lb := sockiotest.NewPairs(t)
	past := time.Unix(1, 0)
	for _, tc := range []struct {
		name string
		set  func(d *DeadlineConn)
	}{
		{"limit", func(d *DeadlineConn) { d.SetReadLimit(5 * time.Second) }},
		{"timeout", func(d *DeadlineConn) { d.SetReadTimeout(5 * time.Second) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, b := rawPair(t, lb)
			d.Conn.SetReadDeadline(past)
			tc.set(d)
			from := time.Now()
			if _, err := d.Conn.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(from) > time.Second {
				t.Fatalf("the socket's own read: %v after %s; want the passed deadline still there", err, time.Since(from))
			}
			b.Write([]byte("hello"))
			p := make([]byte, 16)
			if n, err := d.Read(p); err != nil || string(p[:n]) != "hello" {
				t.Fatalf("read %q, %v; want hello", p[:n], err)
			}
			d.Conn.SetReadDeadline(past) // as a watcher ending its wait does
			d.RearmRead()
			b.Write([]byte("again"))
			if n, err := d.Read(p); err != nil || string(p[:n]) != "again" {
				t.Fatalf("read after RearmRead %q, %v; want again", p[:n], err)
			}
		})
	}
	t.Run("a read that waits ends on its limit", func(t *testing.T) {
		d, _ := rawPair(t, lb)
		d.SetReadLimit(50 * time.Millisecond)
		from := time.Now()
		_, err := d.Read(make([]byte, 16))
		if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(from) > 5*time.Second {
			t.Fatalf("read: %v after %s; want the 50ms limit's timeout", err, time.Since(from))
		}
	})
}

// TestReadLimitKeptWhenClose checks that a fixed read limit does not move
// the socket's deadline when the one d set there before (or the one it was
// told of after a Reset: KnownReadDeadline) ends at most an eighth of the
// limit earlier (reading request after request), and moves it otherwise:
// a later end, after RearmRead (someone else set one), after a Reset it
// was told nothing.
func TestReadLimitKeptWhenClose(t *testing.T) {
	lb := sockiotest.NewPairs(t)
	past := time.Unix(1, 0)
	for _, tc := range []struct {
		name  string
		next  func(d *DeadlineConn)
		moved bool
	}{
		{"close: kept", func(d *DeadlineConn) { d.SetReadLimit(8 * time.Second) }, false},
		{"later: moved", func(d *DeadlineConn) { d.SetReadLimit(16 * time.Second) }, true},
		{"earlier: moved", func(d *DeadlineConn) { d.SetReadLimit(time.Second) }, true},
		{"after RearmRead: moved", func(d *DeadlineConn) { d.RearmRead(); d.SetReadLimit(8 * time.Second) }, true},
		{"reset, told the deadline: kept", func(d *DeadlineConn) {
			on := d.ReadDeadlineOn()
			d.Reset(d.Conn, RawConnOf(d.Conn), 5*time.Second, 5*time.Second)
			d.KnownReadDeadline(on)
			d.SetReadLimit(8 * time.Second)
		}, false},
		{"reset, not told: moved", func(d *DeadlineConn) {
			d.Reset(d.Conn, RawConnOf(d.Conn), 5*time.Second, 5*time.Second)
			d.SetReadLimit(8 * time.Second)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, b := rawPair(t, lb)
			d.SetReadLimit(8 * time.Second)
			b.Write([]byte("one"))
			p := make([]byte, 16)
			if _, err := d.Read(p); err != nil {
				t.Fatal(err)
			}
			// A passed deadline now on the socket shows whether the next
			// read set its own.
			d.Conn.SetReadDeadline(past)
			tc.next(d)
			b.Write([]byte("two"))
			n, err := d.Read(p)
			if tc.moved && (err != nil || string(p[:n]) != "two") {
				t.Fatalf("read %q, %v; want two under a deadline set again", p[:n], err)
			}
			if !tc.moved && !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read %q, %v; want the deadline on the socket kept", p[:n], err)
			}
		})
	}
}
