//go:build linux

package sockio

import (
	"errors"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// failingWarmer closes the descriptor, as a warm-up whose net.FileConn
// failed does, and reports the failure.
type failingWarmer struct{ fd int }

var errWarm = errors.New("warm-up failed")

func (w *failingWarmer) WarmUp() (net.Conn, syscall.RawConn, error) {
	unix.Close(w.fd)
	return nil, nil, errWarm
}

func socketPair(t *testing.T) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fds[0], fds[1]
}

// TestColdConnAfterFailedWarmUp: once a warm-up failed (its descriptor
// closed), no later call reaches the descriptor number, which another
// socket may reuse.
func TestColdConnAfterFailedWarmUp(t *testing.T) {
	fd, peer := socketPair(t)
	defer unix.Close(peer)
	var cc ColdConn
	c, _ := cc.Bind(fd, &failingWarmer{fd: fd})
	var b [8]byte
	if _, err := c.Read(b[:]); !errors.Is(err, errWarm) {
		t.Fatalf("read with nothing there: %v, want the warm-up's error", err)
	}
	// A new socket gets the lowest free number, most often the one just
	// closed; whether or not it did, the write must fail.
	again, other := socketPair(t)
	defer unix.Close(again)
	defer unix.Close(other)
	if n, err := c.Write([]byte("HTTP/1.1 502")); err == nil {
		t.Fatalf("write after a failed warm-up: %d bytes, no error", n)
	}
	for _, s := range []int{again, other} {
		if n, _ := unix.Read(s, b[:]); n > 0 {
			t.Fatalf("a write after a failed warm-up reached descriptor %d, now another socket: %q", fd, b[:n])
		}
	}
}
