package sockpoll

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// fdOf returns c's descriptor.
func fdOf(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// waitReadable polls fd until it is readable or a second passes.
func waitReadable(fd int) (bool, error) {
	deadline := time.Now().Add(time.Second)
	for {
		r, err := Readable(fd)
		if r || err != nil || time.Now().After(deadline) {
			return r, err
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReadable: a quiet socket is not readable; bytes and the peer's close
// make it readable, and nothing is consumed.
func TestReadable(t *testing.T) {
	a, b := tcpPair(t)
	fd := fdOf(t, a)
	if r, err := Readable(fd); r || err != nil {
		t.Fatalf("quiet socket: readable %v, %v", r, err)
	}
	b.Write([]byte("x"))
	if r, err := waitReadable(fd); !r || err != nil {
		t.Fatalf("after a byte: readable %v, %v", r, err)
	}
	if r, _ := Readable(fd); !r {
		t.Fatal("the poll consumed the byte")
	}
	buf := make([]byte, 1)
	if n, err := a.Read(buf); n != 1 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	if r, err := Readable(fd); r || err != nil {
		t.Fatalf("drained socket: readable %v, %v", r, err)
	}
	b.Close()
	if r, err := waitReadable(fd); !r || err != nil {
		t.Fatalf("after the peer's close: readable %v, %v", r, err)
	}
}
