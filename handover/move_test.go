//go:build linux

package handover

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ends returns the old and the new process's ends of the session phase
// over a socket pair, as after Ready. oldGone answers the new end's
// question whether the old process exited.
func ends(t *testing.T, oldGone bool) (*Mover, *Conn) {
	t.Helper()
	a, b := pair(t)
	m := newMover(a, NewWriter(a), NewReader(a, 0))
	c := newConn(b, Hello{})
	c.sessions = true
	c.oldGone = func() bool { return oldGone }
	return m, c
}

// devNulls opens n descriptors of /dev/null, closed at the test's end.
func devNulls(t *testing.T, n int) []int {
	t.Helper()
	fds := make([]int, n)
	for i := range fds {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds[i] = fd
	}
	t.Cleanup(func() { closeFDs(fds) })
	return fds
}

// items makes n items of per descriptors each from fds.
func items(fds []int, n, per int) []Item {
	out := make([]Item, n)
	for i := range out {
		out[i] = Item{Meta: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), FDs: fds[i*per : (i+1)*per]}
	}
	return out
}

// sameFile reports whether descriptors a and b open the same file.
func sameFile(t *testing.T, a, b int) bool {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Fstat(a, &sa); err != nil {
		t.Fatalf("fstat %d: %v", a, err)
	}
	if err := unix.Fstat(b, &sb); err != nil {
		t.Fatalf("fstat %d: %v", b, err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino && a != b
}

// TestMoveCommit: 150 sessions (300 descriptors, two records' worth) and 3
// connections move in order, with their descriptors; Taken, Commit and two
// Status records follow, then the end of the stream.
func TestMoveCommit(t *testing.T) {
	m, c := ends(t, false)
	// Sessions are socket pairs' ends, so the copies can be told apart.
	sessFDs := make([]int, 0, 300)
	for range 150 {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		sessFDs = append(sessFDs, fds[0], fds[1])
	}
	t.Cleanup(func() { closeFDs(sessFDs) })
	sessions, conns := items(sessFDs, 150, 2), items(devNulls(t, 3), 3, 1)

	errc := make(chan error, 1)
	go func() {
		if err := m.Send(sessions, conns); err != nil {
			errc <- err
			return
		}
		if err := m.Await(); err != nil {
			errc <- err
			return
		}
		if err := m.Commit(); err != nil {
			errc <- err
			return
		}
		for i := range 2 {
			if err := m.Status([]json.RawMessage{json.RawMessage(fmt.Sprintf(`{"pid":%d}`, i))}); err != nil {
				errc <- err
				return
			}
		}
		errc <- m.Close()
	}()

	got, err := c.Receive(time.Now().Add(10*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if len(got.Sessions) != 150 || len(got.Conns) != 3 {
		t.Fatalf("received %d sessions, %d conns", len(got.Sessions), len(got.Conns))
	}
	for i, it := range got.Sessions {
		if string(it.Meta) != fmt.Sprintf(`{"i":%d}`, i) || len(it.FDs) != 2 {
			t.Fatalf("session %d: %s, %d descriptors", i, it.Meta, len(it.FDs))
		}
		for j := range 2 {
			if !sameFile(t, it.FDs[j], sessions[i].FDs[j]) {
				t.Fatalf("session %d descriptor %d is not the one sent", i, j)
			}
		}
	}
	for i, it := range got.Conns {
		if string(it.Meta) != fmt.Sprintf(`{"i":%d}`, i) || len(it.FDs) != 1 || !sameFile(t, it.FDs[0], conns[i].FDs[0]) {
			t.Fatalf("conn %d: %s %v", i, it.Meta, it.FDs)
		}
	}
	if err := c.Taken(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.AwaitCommit(time.Now().Add(10 * time.Second)); v != Committed || err != nil {
		t.Fatalf("AwaitCommit = %s, %v", v, err)
	}
	var pids []string
	if err := c.Statuses(func(e []json.RawMessage) { pids = append(pids, string(e[0])) }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(pids, " ") != `{"pid":0} {"pid":1}` {
		t.Fatalf("statuses %q", pids)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestStatusesAfterRefusedBatch: a new process that refused the sessions
// in the middle of the old process's batches (past its bound, its
// deadline) still hears the old process's Status records: the rest of the
// batches before them are skipped (their descriptors closed), not taken
// for the old process's end.
func TestStatusesAfterRefusedBatch(t *testing.T) {
	m, c := ends(t, false)
	sessions := items(devNulls(t, 300), 150, 2) // two records
	before := openFDs(t)
	errc := make(chan error, 1)
	go func() {
		if err := m.Send(sessions, nil); err != nil {
			errc <- err
			return
		}
		err := m.Await()
		if !errors.Is(err, ErrMalformed) && !strings.Contains(fmt.Sprint(err), "peer gave up") {
			errc <- fmt.Errorf("Await = %v, want the refusal", err)
			return
		}
		m.Abort(err.Error())
		for i := range 2 {
			if err := m.Status([]json.RawMessage{json.RawMessage(fmt.Sprintf(`{"pid":%d}`, i))}); err != nil {
				errc <- err
				return
			}
		}
		errc <- m.Close()
	}()
	_, err := c.Receive(time.Now().Add(10*time.Second), 1)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Receive = %v, want ErrTooLarge", err)
	}
	if err := c.Refuse(err.Error()); err != nil {
		t.Fatal(err)
	}
	var pids []string
	if err := c.Statuses(func(e []json.RawMessage) { pids = append(pids, string(e[0])) }); err != nil {
		t.Fatalf("Statuses = %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if strings.Join(pids, " ") != `{"pid":0} {"pid":1}` {
		t.Fatalf("statuses %q", pids)
	}
	if n := openFDs(t); n != before-2 { // both ends closed
		t.Fatalf("%d descriptors open, %d before", n, before)
	}
}

// TestSendBatches: no record carries more than MaxFiles descriptors, and a
// large description closes its batch early.
func TestSendBatches(t *testing.T) {
	m, c := ends(t, false)
	fds := devNulls(t, 1)
	big := json.RawMessage(`"` + strings.Repeat("x", batchBytes/2+1) + `"`)
	var conns []Item
	for range 250 {
		conns = append(conns, Item{Meta: json.RawMessage(`{}`), FDs: fds})
	}
	conns = append(conns, Item{Meta: big, FDs: fds}, Item{Meta: big, FDs: fds})
	errc := make(chan error, 1)
	go func() { errc <- m.Send(nil, conns) }()
	var sizes []int
	for {
		rec, err := c.r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if rec.Type == TypeEnd {
			break
		}
		sizes = append(sizes, len(rec.FDs))
		rec.Close()
	}
	if fmt.Sprint(sizes) != "[200 51 1]" {
		t.Fatalf("batches of %v descriptors, want [200 51 1]", sizes)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestMoveLostMidBatch: the new process dies after the first batch: the
// old one's Await fails (it aborts and keeps everything). The other way
// round, an old process gone mid-batch leaves the new one nothing open.
func TestMoveLostMidBatch(t *testing.T) {
	t.Run("new process gone", func(t *testing.T) {
		m, c := ends(t, false)
		fds := devNulls(t, 500)
		errc := make(chan error, 1)
		go func() {
			err := m.Send(items(fds, 250, 2), nil)
			if err == nil {
				err = m.Await()
			}
			errc <- err
		}()
		rec, err := c.r.Read()
		if err != nil {
			t.Fatal(err)
		}
		rec.Close()
		c.Close()
		if err := <-errc; err == nil {
			t.Fatal("the old process heard no failure")
		}
	})
	t.Run("old process gone", func(t *testing.T) {
		m, c := ends(t, true)
		fds := devNulls(t, 400)
		before := openFDs(t)
		go func() {
			m.sendBatches(TypeSessions, items(fds, 200, 2), 2) // two records, no End
			m.Close()
		}()
		if got, err := c.Receive(time.Now().Add(10*time.Second), 0); err == nil {
			got.Close()
			t.Fatal("Receive without End succeeded")
		}
		if n := openFDs(t); n != before-1 { // less the old end, closed
			t.Fatalf("%d descriptors open after a broken batch, %d before", n, before)
		}
	})
}

// TestReceiveRefused: a batch that is malformed, too large, empty, or
// whose descriptors do not match its items ends Receive with an error,
// and every descriptor received is closed.
func TestReceiveRefused(t *testing.T) {
	cases := []struct {
		name     string
		send     func(w *Writer, fds []int) error
		maxItems int
		want     error
	}{
		{"descriptors do not match", func(w *Writer, fds []int) error {
			return w.WriteFDs(TypeSessions, []byte(`[{},{}]`), fds[:3])
		}, 0, ErrFiles},
		{"empty batch with descriptors", func(w *Writer, fds []int) error {
			return w.WriteFDs(TypeConns, []byte(`[]`), fds[:2])
		}, 0, ErrMalformed},
		{"not JSON", func(w *Writer, fds []int) error {
			return w.WriteFDs(TypeConns, []byte(`{"i":`), fds[:1])
		}, 0, ErrMalformed},
		{"past the item bound", func(w *Writer, fds []int) error {
			if err := w.WriteFDs(TypeConns, []byte(`[{},{}]`), fds[:2]); err != nil {
				return err
			}
			return w.WriteFDs(TypeConns, []byte(`[{},{}]`), fds[2:4])
		}, 3, ErrTooLarge},
		{"oversized", func(w *Writer, fds []int) error {
			if err := w.WriteFDs(TypeConns, []byte(`[{}]`), fds[:1]); err != nil {
				return err
			}
			return w.WriteFDs(TypeConns, make([]byte, MaxBatchBytes+1), fds[1:4])
		}, 0, ErrTooLarge},
		{"unknown records past the bound", func(w *Writer, fds []int) error {
			for i := range 3 {
				if err := w.WriteFDs(Type(99), nil, fds[i:i+1]); err != nil {
					return err
				}
			}
			return nil
		}, 2, ErrTooLarge},
		{"abort after a batch", func(w *Writer, fds []int) error {
			if err := w.WriteFDs(TypeSessions, []byte(`[{}]`), fds[:2]); err != nil {
				return err
			}
			return w.Write(TypeAbort, []byte("no"))
		}, 0, ErrAborted},
		{"abort with descriptors", func(w *Writer, fds []int) error {
			return w.WriteFDs(TypeAbort, []byte("no"), fds[:2])
		}, 0, ErrAborted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, c := ends(t, false)
			fds := devNulls(t, 4)
			before := openFDs(t)
			go func() { tc.send(m.w, fds); m.c.CloseWrite() }() // ends at the test's cleanup, when blocked
			got, err := c.Receive(time.Now().Add(10*time.Second), tc.maxItems)
			if !errors.Is(err, tc.want) {
				if got != nil {
					got.Close()
				}
				t.Fatalf("Receive = %v, want %v", err, tc.want)
			}
			if n := openFDs(t); n != before {
				t.Fatalf("%d descriptors open after a refused batch, %d before", n, before)
			}
		})
	}
}

// TestAwaitCommit: the new process runs what it holds on Commit, or when
// the stream ended and the old process is gone; otherwise (Abort, an
// unexpected record, a stream broken while the old one lives) it must not.
func TestAwaitCommit(t *testing.T) {
	defer func(d time.Duration) { goneWait = d }(goneWait)
	goneWait = 50 * time.Millisecond
	cases := []struct {
		name    string
		oldGone bool
		send    func(m *Mover)
		want    Verdict
	}{
		{"commit", false, func(m *Mover) { m.Commit() }, Committed},
		{"abort", false, func(m *Mover) { m.Abort("client gone") }, Aborted},
		{"another record", false, func(m *Mover) { m.w.Write(TypeReady, nil) }, Aborted},
		{"stream ends, old process gone", true, func(m *Mover) {}, Orphaned},
		{"stream ends, old process alive", false, func(m *Mover) {}, Aborted},
		{"truncated commit, old process alive", false, func(m *Mover) {
			m.w.Write(TypeHello, nil) // the preamble
			m.c.Write(header(0, TypeCommit, 0)[:3])
		}, Aborted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, c := ends(t, tc.oldGone)
			go func() { tc.send(m); m.Close() }()
			if tc.name == "truncated commit, old process alive" {
				if _, err := c.r.Read(); err != nil { // the Hello that carried the preamble
					t.Fatal(err)
				}
			}
			v, err := c.AwaitCommit(time.Now().Add(10 * time.Second))
			if v != tc.want {
				t.Fatalf("AwaitCommit = %s (%v), want %s", v, err, tc.want)
			}
			if tc.want == Aborted && err == nil {
				t.Fatal("aborted without a reason")
			}
		})
	}
}

// TestStatusesBounded: a Status record over MaxStatusBytes, or one with
// descriptors, ends the relay with an error (descriptors closed); silence
// past the deadline ends it too.
func TestStatusesBounded(t *testing.T) {
	t.Run("oversized", func(t *testing.T) {
		m, c := ends(t, false)
		go m.w.Write(TypeStatus, make([]byte, MaxStatusBytes+1))
		if err := c.Statuses(func([]json.RawMessage) { t.Error("an oversized status was read") }); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Statuses = %v", err)
		}
	})
	t.Run("descriptors", func(t *testing.T) {
		m, c := ends(t, false)
		fds := devNulls(t, 2)
		before := openFDs(t)
		go m.w.WriteFDs(TypeStatus, []byte(`[]`), fds)
		if err := c.Statuses(func([]json.RawMessage) {}); !errors.Is(err, ErrFiles) {
			t.Fatalf("Statuses = %v", err)
		}
		if n := openFDs(t); n != before-1 { // and the connection closed
			t.Fatalf("%d descriptors open, %d before", n, before)
		}
	})
	t.Run("too many entries", func(t *testing.T) {
		m, c := ends(t, false)
		entries := make([]json.RawMessage, MaxStatusEntries+5)
		for i := range entries {
			entries[i] = json.RawMessage(`{}`)
		}
		b, _ := json.Marshal(entries)
		go func() { m.w.Write(TypeStatus, b); m.Close() }()
		n := 0
		if err := c.Statuses(func(e []json.RawMessage) { n = len(e) }); err != nil || n != MaxStatusEntries {
			t.Fatalf("Statuses = %v, %d entries", err, n)
		}
	})
}

// TestReceiveNeedsSessions: a Conn whose old process did not name
// CapSessions receives nothing.
func TestReceiveNeedsSessions(t *testing.T) {
	_, c := ends(t, false)
	c.sessions = false
	if _, err := c.Receive(time.Now().Add(time.Second), 0); err == nil {
		t.Fatal("Receive without the capability")
	}
}
