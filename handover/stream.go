package handover

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Version is the version of the record stream this package speaks. Both
// ends send it in their preamble; a stream of another version is refused.
const Version uint16 = 1

// magic opens every stream, before the version.
const magic = "tetherHO"

// preambleLen is the length of magic and the version.
const preambleLen = len(magic) + 2

// headerLen is the length of a record header: the payload length (4
// bytes), the type (2) and the number of descriptors (1), and one byte kept
// zero.
const headerLen = 8

// MaxFiles is the most descriptors one record may carry: a batch of
// sessions (two each) or idle connections (one each) fills it. The kernel
// takes at most 253 (SCM_MAX_FD) in one message.
const MaxFiles = 200

// DefaultMaxPayload bounds a record's payload when a Reader is given none.
const DefaultMaxPayload = 16 << 20

// Type says what a record holds.
type Type uint16

// The record types. Numbers are never reused. A reader skips a type it
// does not know (closing its descriptors); types 7 to 11 are sent only to a
// peer whose Hello names CapSessions.
const (
	TypeHello    Type = 1  // Hello (JSON): who sends
	TypeListener Type = 2  // Listener (JSON) and its socket
	TypeNodes    Type = 3  // []NodeState (JSON)
	TypeEnd      Type = 4  // no payload: the sender's state (or batch of items) is complete
	TypeReady    Type = 5  // no payload: the new process serves
	TypeAbort    Type = 6  // a reason (text): the sender gives up
	TypeSessions Type = 7  // a JSON array of items, two descriptors each (client, node)
	TypeConns    Type = 8  // a JSON array of items, one descriptor each
	TypeTaken    Type = 9  // no payload: the new process holds every item
	TypeCommit   Type = 10 // no payload: the old process let them go; the new one runs them
	TypeStatus   Type = 11 // a JSON array: the old process and those it relays, newest first
)

func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeListener:
		return "listener"
	case TypeNodes:
		return "nodes"
	case TypeEnd:
		return "end"
	case TypeReady:
		return "ready"
	case TypeAbort:
		return "abort"
	case TypeSessions:
		return "sessions"
	case TypeConns:
		return "conns"
	case TypeTaken:
		return "taken"
	case TypeCommit:
		return "commit"
	case TypeStatus:
		return "status"
	}
	return fmt.Sprintf("type %d", uint16(t))
}

// Errors of the stream, checked with errors.Is.
var (
	ErrVersion   = errors.New("handover: another stream version")
	ErrTooLarge  = errors.New("handover: record too large")
	ErrFiles     = errors.New("handover: descriptors do not match the record")
	ErrMalformed = errors.New("handover: malformed stream")
)

// Record is one typed record. FDs are the descriptors it carries, as
// received (close-on-exec); the receiver owns them (Close closes them).
// They are plain descriptors, not *os.File, so that no finalizer closes
// one the caller passed on.
type Record struct {
	Type    Type
	Payload []byte
	FDs     []int
}

// Close closes the record's descriptors.
func (r *Record) Close() {
	closeFDs(r.FDs)
	r.FDs = nil
}

// closeFDs closes descriptors with close(2).
func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// Writer writes records to a unix stream socket. It is not safe for
// concurrent use.
type Writer struct {
	c         *net.UnixConn
	preambled bool
	buf       []byte
}

// NewWriter returns a Writer on c; its first write sends the preamble.
func NewWriter(c *net.UnixConn) *Writer { return &Writer{c: c} }

// Write sends one record: its header and payload in one message, with
// files attached to it. The files stay the caller's to close.
//
// A file's descriptor is read through its RawConn, not os.File.Fd: Fd
// puts a socket's file description in blocking mode, and a listener's copy
// shares it with the listener this process serves (and the new process's
// copy), whose accept would then block a thread in the kernel and whose
// Close would wait for the next connection.
func (w *Writer) Write(t Type, payload []byte, files ...*os.File) error {
	var fds []int
	if len(files) > 0 {
		fds = make([]int, len(files))
		for i, f := range files {
			fd, err := rawFD(f)
			if err != nil {
				return fmt.Errorf("write %s: %w", t, err)
			}
			fds[i] = fd
		}
	}
	err := w.WriteFDs(t, payload, fds)
	runtime.KeepAlive(files) // open until the descriptors are sent
	return err
}

// rawFD returns f's descriptor, leaving its mode as it is.
func rawFD(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// WriteFDs is Write with plain descriptors, which stay the caller's.
func (w *Writer) WriteFDs(t Type, payload []byte, fds []int) error {
	if len(fds) > MaxFiles {
		return fmt.Errorf("write %s: %d descriptors: %w", t, len(fds), ErrTooLarge)
	}
	if uint64(len(payload)) > 1<<32-1 {
		return fmt.Errorf("write %s: %d bytes: %w", t, len(payload), ErrTooLarge)
	}
	w.buf = w.buf[:0]
	if !w.preambled {
		w.buf = append(w.buf, magic...)
		w.buf = binary.BigEndian.AppendUint16(w.buf, Version)
	}
	w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(len(payload)))
	w.buf = binary.BigEndian.AppendUint16(w.buf, uint16(t))
	w.buf = append(w.buf, byte(len(fds)), 0)
	w.buf = append(w.buf, payload...)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	// The descriptors ride on the first byte of the message; the rest of
	// a long payload may follow in further writes.
	n, _, err := w.c.WriteMsgUnix(w.buf, oob, nil)
	if err == nil && n < len(w.buf) {
		_, err = w.c.Write(w.buf[n:])
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", t, err)
	}
	w.preambled = true
	return nil
}

// Reader reads records from a unix stream socket. It is not safe for
// concurrent use.
type Reader struct {
	c         *net.UnixConn
	max       int
	preambled bool
	oob       []byte
	pending   []int // descriptors received before their record was whole
}

// NewReader returns a Reader on c that refuses payloads over maxPayload
// bytes (0 means DefaultMaxPayload).
func NewReader(c *net.UnixConn, maxPayload int) *Reader {
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayload
	}
	return &Reader{c: c, max: maxPayload, oob: make([]byte, unix.CmsgSpace(MaxFiles*4))}
}

// SetMaxPayload changes the largest payload the next records may have
// (0 means DefaultMaxPayload): a phase of the stream whose records are
// small refuses large ones before reading them.
func (r *Reader) SetMaxPayload(n int) {
	if n <= 0 {
		n = DefaultMaxPayload
	}
	r.max = n
}

// Read returns the next record. A record refused (too large, descriptors
// that do not match its header) has its descriptors closed; after any
// error the stream is unusable.
func (r *Reader) Read() (Record, error) {
	if !r.preambled {
		var p [preambleLen]byte
		if err := r.full(p[:]); err != nil {
			return Record{}, r.fail(fmt.Errorf("read preamble: %w", err))
		}
		if string(p[:len(magic)]) != magic {
			return Record{}, r.fail(fmt.Errorf("read preamble %q: %w", p[:len(magic)], ErrMalformed))
		}
		if v := binary.BigEndian.Uint16(p[len(magic):]); v != Version {
			return Record{}, r.fail(fmt.Errorf("stream version %d, this tether speaks %d: %w", v, Version, ErrVersion))
		}
		r.preambled = true
	}
	var h [headerLen]byte
	if err := r.full(h[:]); err != nil {
		return Record{}, r.fail(fmt.Errorf("read record header: %w", err))
	}
	size := binary.BigEndian.Uint32(h[0:4])
	rec := Record{Type: Type(binary.BigEndian.Uint16(h[4:6]))}
	nfiles := int(h[6])
	if h[7] != 0 {
		return Record{}, r.fail(fmt.Errorf("read %s: reserved byte %d: %w", rec.Type, h[7], ErrMalformed))
	}
	if uint64(size) > uint64(r.max) {
		return Record{}, r.fail(fmt.Errorf("read %s: %d bytes, at most %d: %w", rec.Type, size, r.max, ErrTooLarge))
	}
	if size > 0 {
		rec.Payload = make([]byte, size)
		if err := r.full(rec.Payload); err != nil {
			return Record{}, r.fail(fmt.Errorf("read %s payload: %w", rec.Type, err))
		}
	}
	if len(r.pending) != nfiles {
		return Record{}, r.fail(fmt.Errorf("read %s: %d descriptors for %d announced: %w", rec.Type, len(r.pending), nfiles, ErrFiles))
	}
	rec.FDs, r.pending = r.pending, nil
	return rec, nil
}

// fail closes the descriptors received for a record that will never be
// returned, and passes err on.
func (r *Reader) fail(err error) error {
	closeFDs(r.pending)
	r.pending = nil
	return err
}

// full fills p from the socket, collecting any descriptors that arrive.
// A stream that ends before p's first byte is io.EOF; within p,
// io.ErrUnexpectedEOF.
func (r *Reader) full(p []byte) error {
	whole := len(p)
	for len(p) > 0 {
		n, oobn, flags, err := r.recv(p)
		if oobn > 0 {
			if perr := r.takeRights(r.oob[:oobn]); perr != nil && err == nil {
				err = perr
			}
		}
		if err == nil && flags&unix.MSG_CTRUNC != 0 {
			err = fmt.Errorf("more than %d descriptors: %w", MaxFiles, ErrFiles)
		}
		p = p[n:]
		if err != nil {
			if errors.Is(err, io.EOF) && len(p) < whole {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// recv is one recvmsg(2) on the socket, under its deadline, with
// MSG_CMSG_CLOEXEC: a descriptor received is never inherited by a process
// this one starts meanwhile.
func (r *Reader) recv(p []byte) (n, oobn, flags int, err error) {
	rc, err := r.c.SyscallConn()
	if err != nil {
		return 0, 0, 0, err
	}
	var serr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, oobn, flags, _, serr = unix.Recvmsg(int(fd), p, r.oob, recvFlags)
			if serr != unix.EINTR {
				return serr != unix.EAGAIN
			}
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, oobn, flags, err
	}
	if n == 0 {
		return 0, oobn, flags, io.EOF
	}
	return n, oobn, flags, nil
}

// takeRights adds the descriptors of the control messages in oob to
// pending.
func (r *Reader) takeRights(oob []byte) error {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Errorf("control message: %w", err)
	}
	var bad error
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			bad = fmt.Errorf("control message: %w", err)
			continue
		}
		for _, fd := range fds {
			if recvFlags == 0 {
				unix.CloseOnExec(fd)
			}
			r.pending = append(r.pending, fd)
		}
	}
	if len(r.pending) > MaxFiles {
		return fmt.Errorf("%d descriptors: %w", len(r.pending), ErrFiles)
	}
	return bad
}
