//go:build linux

package handover

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns the two ends of a connected unix stream socket pair.
func pair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = c.(*net.UnixConn)
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	return out[0], out[1]
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

func TestRecordRoundTrip(t *testing.T) {
	a, b := pair(t)
	w, r := NewWriter(a), NewReader(b, 0)
	big := bytes.Repeat([]byte("x"), 300<<10) // longer than one socket buffer
	cases := []struct {
		typ     Type
		payload []byte
	}{
		{TypeHello, []byte(`{"pid":1}`)},
		{TypeEnd, nil},
		{TypeNodes, big},
		{Type(999), []byte("a later version's record")},
	}
	errc := make(chan error, 1)
	go func() {
		for _, c := range cases {
			if err := w.Write(c.typ, c.payload); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for _, c := range cases {
		rec, err := r.Read()
		if err != nil {
			t.Fatalf("%s: %v", c.typ, err)
		}
		if rec.Type != c.typ || !bytes.Equal(rec.Payload, c.payload) || len(rec.FDs) != 0 {
			t.Fatalf("%s: got %s with %d bytes and %d files", c.typ, rec.Type, len(rec.Payload), len(rec.FDs))
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// rawStream writes raw bytes (a hand-made stream) to a and closes it.
func rawStream(t *testing.T, a *net.UnixConn, parts ...[]byte) {
	t.Helper()
	for _, p := range parts {
		if _, err := a.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	a.CloseWrite()
}

func preamble(v uint16) []byte {
	return binary.BigEndian.AppendUint16([]byte(magic), v)
}

func header(size uint32, t Type, files byte) []byte {
	h := binary.BigEndian.AppendUint32(nil, size)
	h = binary.BigEndian.AppendUint16(h, uint16(t))
	return append(h, files, 0)
}

func TestRecordRefused(t *testing.T) {
	cases := []struct {
		name  string
		parts [][]byte
		want  error
	}{
		{"wrong version", [][]byte{preamble(Version + 1), header(0, TypeEnd, 0)}, ErrVersion},
		{"not a hand-over stream", [][]byte{[]byte("GET / HTTP/1.1\r\n\r\n")}, ErrMalformed},
		{"truncated preamble", [][]byte{[]byte(magic)}, io.ErrUnexpectedEOF},
		{"truncated header", [][]byte{preamble(Version), header(4, TypeHello, 0)[:5]}, io.ErrUnexpectedEOF},
		{"truncated payload", [][]byte{preamble(Version), header(10, TypeHello, 0), []byte("{}")}, io.ErrUnexpectedEOF},
		{"oversized", [][]byte{preamble(Version), header(1<<10+1, TypeNodes, 0)}, ErrTooLarge},
		{"oversized announced as 4 GiB", [][]byte{preamble(Version), header(1<<32-1, TypeNodes, 0)}, ErrTooLarge},
		{"descriptors announced, none sent", [][]byte{preamble(Version), header(0, TypeListener, 1)}, ErrFiles},
		{"reserved byte set", [][]byte{preamble(Version), append(header(0, TypeEnd, 0)[:7], 1)}, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pair(t)
			rawStream(t, a, tc.parts...)
			_, err := NewReader(b, 1<<10).Read()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestRecordRefusedClosesFiles: the descriptors of a refused record are
// closed, not leaked.
func TestRecordRefusedClosesFiles(t *testing.T) {
	a, b := pair(t)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before := openFDs(t)
	errc := make(chan error, 1)
	go func() { errc <- NewWriter(a).Write(TypeNodes, make([]byte, 2<<10), f, f, f) }()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if _, err := NewReader(b, 1<<10).Read(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if n := openFDs(t); n != before {
		t.Fatalf("%d descriptors open after a refused record, %d before", n, before)
	}
}

// TestListenerPassing hands a listening socket over a socket pair and
// serves a connection on the received copy, one that was queued in the
// kernel before the hand-over among them.
func TestListenerPassing(t *testing.T) {
	a, b := pair(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	queued, err := net.Dial("tcp", ln.Addr().String()) // waits in the accept queue
	if err != nil {
		t.Fatal(err)
	}
	defer queued.Close()
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()

	errc := make(chan error, 1)
	go func() {
		o := &Offer{State: State{Listeners: []Listener{{Name: "listen", Addr: ln.Addr().String(), File: lf}}, Nodes: []NodeState{{Name: "n1", URL: "http://127.0.0.1:1", Drained: true}}}}
		w := NewWriter(a)
		for _, l := range o.State.Listeners {
			if err := writeJSON(w, TypeListener, l, l.File); err != nil {
				errc <- err
				return
			}
		}
		if err := writeJSON(w, TypeNodes, o.State.Nodes); err != nil {
			errc <- err
			return
		}
		errc <- w.Write(TypeEnd, nil)
	}()
	r := NewReader(b, 0)
	rec, err := expect(r, TypeListener)
	if err != nil {
		t.Fatal(err)
	}
	var l Listener
	if err := readJSON(&rec, &l); err != nil || l.Name != "listen" || len(rec.FDs) != 1 {
		t.Fatalf("listener record %+v, %d files, %v", l, len(rec.FDs), err)
	}
	lf2 := os.NewFile(uintptr(rec.FDs[0]), "listener")
	got, err := net.FileListener(lf2)
	lf2.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	rec, err = expect(r, TypeNodes)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []NodeState
	if err := readJSON(&rec, &nodes); err != nil || len(nodes) != 1 || !nodes[0].Drained {
		t.Fatalf("nodes %+v, %v", nodes, err)
	}
	if _, err := expect(r, TypeEnd); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	ln.Close() // the sender stops: the socket lives on in the copy

	for i := range 2 {
		c := queued
		if i == 1 {
			if c, err = net.Dial("tcp", ln.Addr().String()); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
		}
		got.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		sc, err := got.Accept()
		if err != nil {
			t.Fatalf("accept %d on the received listener: %v", i, err)
		}
		fmt.Fprintf(sc, "%d", i)
		sc.Close()
		b, err := io.ReadAll(c)
		if err != nil || string(b) != fmt.Sprint(i) {
			t.Fatalf("connection %d read %q, %v", i, b, err)
		}
	}
}

// nonblocking reports whether the socket under ln is in non-blocking mode,
// as Go's poller needs it: a blocking one ties a thread up in accept(2)
// and makes Close wait until a connection arrives.
func nonblocking(t *testing.T, ln net.Listener) bool {
	t.Helper()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fl int
	var ferr error
	if err := rc.Control(func(fd uintptr) { fl, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil {
		t.Fatal(err)
	}
	if ferr != nil {
		t.Fatal(ferr)
	}
	return fl&unix.O_NONBLOCK != 0
}

// TestWriteKeepsListenerNonblocking: sending a listener's file leaves the
// socket non-blocking. Its copy shares the open file description with the
// listener this process serves (and the one the new process gets), so
// os.File.Fd, which switches that description to blocking mode, must not
// be what sends it.
func TestWriteKeepsListenerNonblocking(t *testing.T) {
	a, b := pair(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if !nonblocking(t, ln) {
		t.Fatal("listener blocking before the hand-over")
	}
	errc := make(chan error, 1)
	go func() { errc <- NewWriter(a).Write(TypeListener, []byte(`{"name":"listen"}`), lf) }()
	rec, err := NewReader(b, 0).Read()
	if err != nil {
		t.Fatal(err)
	}
	rec.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !nonblocking(t, ln) {
		t.Fatal("sending the listener's copy left the listener blocking")
	}
}

// TestTakeClosesStrayDescriptors: descriptors that come with a record
// that carries none (a Nodes record) are closed, whether the state is
// taken or not.
func TestTakeClosesStrayDescriptors(t *testing.T) {
	for _, end := range []Type{TypeEnd, TypeAbort} {
		t.Run(end.String(), func(t *testing.T) {
			a, b := pair(t)
			fds := devNulls(t, 3)
			before := openFDs(t)
			errc := make(chan error, 1)
			go func() {
				w := NewWriter(a)
				err := writeJSON(w, TypeHello, Hello{PID: 1, Version: "old"})
				if err == nil {
					err = w.WriteFDs(TypeNodes, []byte(`[{"name":"n1","url":"http://127.0.0.1:1"}]`), fds)
				}
				if err == nil {
					err = w.Write(end, nil)
				}
				errc <- err
			}()
			hc := newConn(b, Hello{PID: 2})
			st, err := hc.take(Hello{PID: 2})
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if end == TypeEnd {
				if err != nil || len(st.Nodes) != 1 {
					t.Fatalf("take = %+v, %v", st, err)
				}
				st.Close()
			} else if err == nil {
				t.Fatal("take after an Abort")
			}
			if n := openFDs(t); n != before {
				t.Fatalf("%d descriptors open after take, %d before", n, before)
			}
		})
	}
}
