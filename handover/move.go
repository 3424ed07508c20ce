package handover

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// The session phase follows the new process's Ready when both Hellos name
// CapSessions:
//
//	old → new  Sessions records (batches; two descriptors per item)
//	old → new  Conns records (batches; one descriptor per item)
//	old → new  End
//	new → old  Taken (it holds every item; nothing runs yet), or Abort
//	old → new  Commit (the old process let them go), or Abort
//	old → new  Status records, every second until the old process exits
//
// Until Commit the old process owns every item and the new one only holds
// copies: whatever goes wrong (an Abort either way, a broken stream, a
// deadline) the old process keeps them and the new one closes its copies.
// The one exception is the old process's death: a new process whose
// stream ends without a word, and whose parent (the old process) has
// exited, runs what it holds, as nobody else can (AwaitCommit).

// Limits of the session phase.
const (
	// DefaultMaxItems bounds the items (sessions and connections) one
	// Receive accepts when given no bound.
	DefaultMaxItems = 1 << 20
	// batchBytes is the payload a batch grows to before it is sent, unless
	// its descriptors fill it first; an item larger than that goes alone.
	batchBytes = 1 << 20
	// MaxBatchBytes bounds the payload of a Sessions or Conns record the
	// new process accepts: a batch, or one item alone.
	MaxBatchBytes = 4 << 20
	// MaxStatusBytes bounds a Status record's payload, and MaxStatusEntries
	// the entries in it.
	MaxStatusBytes   = 64 << 10
	MaxStatusEntries = 64
	// statusSilence is how long the new process waits for the next Status
	// record before it takes the old process for gone.
	statusSilence = 10 * time.Second
)

// goneWait bounds the wait for the old process's exit to show once its
// stream ended (its descriptors close a moment before it is gone).
var goneWait = 2 * time.Second

// Item is one thing that moves: a session (two descriptors: client, node)
// or an idle connection (one), and its description, JSON of the caller's.
// The sender's descriptors stay its own; a receiver owns those it got.
type Item struct {
	Meta json.RawMessage
	FDs  []int
}

// Received are the items the new process received. Their descriptors are
// the caller's; Close closes them all (when they are not taken on).
type Received struct {
	Sessions, Conns []Item
}

// Close closes every descriptor received.
func (r *Received) Close() {
	for _, list := range [][]Item{r.Sessions, r.Conns} {
		for _, it := range list {
			closeFDs(it.FDs)
		}
	}
	r.Sessions, r.Conns = nil, nil
}

// Verdict is how the session phase ended for the new process.
type Verdict int

const (
	// Committed: the old process let the items go; run them.
	Committed Verdict = iota
	// Aborted: the old process keeps them (its Abort, or a broken stream
	// while it lives); close the copies.
	Aborted
	// Orphaned: the stream ended without a word and the old process has
	// exited; nobody else can run them: run them.
	Orphaned
)

func (v Verdict) String() string {
	switch v {
	case Committed:
		return "committed"
	case Aborted:
		return "aborted"
	case Orphaned:
		return "orphaned"
	}
	return fmt.Sprintf("verdict %d", int(v))
}

// ErrAborted is the peer's Abort record; its reason follows in the error.
var ErrAborted = errors.New("handover: peer gave up")

// Mover is the old process's end of the session phase. It is not safe for
// concurrent use.
type Mover struct {
	c *net.UnixConn
	w *Writer
	r *Reader
}

// newMover is the old end on c, past the Hellos and Ready (w and r have
// read and written their preambles).
func newMover(c *net.UnixConn, w *Writer, r *Reader) *Mover {
	c.SetDeadline(time.Time{})
	return &Mover{c: c, w: w, r: r}
}

// SetDeadline bounds Send and Await (and the Commit or Abort after them).
func (m *Mover) SetDeadline(t time.Time) error { return m.c.SetDeadline(t) }

// Send sends sessions (two descriptors each) and conns (one each) in
// batches of at most MaxFiles descriptors, then End. The descriptors stay
// the caller's, to close at Commit or keep at Abort.
func (m *Mover) Send(sessions, conns []Item) error {
	for _, b := range []struct {
		t     Type
		items []Item
		per   int
	}{{TypeSessions, sessions, 2}, {TypeConns, conns, 1}} {
		if err := m.sendBatches(b.t, b.items, b.per); err != nil {
			return err
		}
	}
	return m.w.Write(TypeEnd, nil)
}

// sendBatches sends items as records of type t: a JSON array of their
// Metas, with their descriptors in order.
func (m *Mover) sendBatches(t Type, items []Item, per int) error {
	payload := make([]byte, 0, 4096)
	fds := make([]int, 0, MaxFiles)
	flush := func() error {
		if len(fds) == 0 {
			return nil
		}
		payload = append(payload, ']')
		err := m.w.WriteFDs(t, payload, fds)
		payload, fds = payload[:0], fds[:0]
		return err
	}
	for i, it := range items {
		if len(it.FDs) != per {
			return fmt.Errorf("%s item %d: %d descriptors, want %d: %w", t, i, len(it.FDs), per, ErrFiles)
		}
		if !json.Valid(it.Meta) {
			return fmt.Errorf("%s item %d: description is not JSON: %w", t, i, ErrMalformed)
		}
		if len(it.Meta) > MaxBatchBytes-2 {
			return fmt.Errorf("%s item %d: description of %d bytes: %w", t, i, len(it.Meta), ErrTooLarge)
		}
		if len(fds)+per > MaxFiles || len(fds) > 0 && len(payload)+len(it.Meta) > batchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		if len(fds) == 0 {
			payload = append(payload, '[')
		} else {
			payload = append(payload, ',')
		}
		payload = append(payload, it.Meta...)
		fds = append(fds, it.FDs...)
	}
	return flush()
}

// Await waits for the new process's answer to Send: nil when it took
// everything (Taken); otherwise why not (its Abort, a broken stream, the
// deadline). Any error means: abort, keep everything.
func (m *Mover) Await() error {
	m.r.SetMaxPayload(4 << 10)
	rec, err := expect(m.r, TypeTaken)
	if err != nil {
		return fmt.Errorf("wait for taken: %w", err)
	}
	rec.Close()
	return nil
}

// Commit tells the new process to run what it took. Only when Commit
// returns nil may the caller let its own copies go: an error means the new
// process may not have heard it (it then closes its copies while this
// process lives), so the caller aborts.
func (m *Mover) Commit() error { return m.w.Write(TypeCommit, nil) }

// Abort tells the new process that this one keeps everything, and why.
// The connection stays open for Status.
func (m *Mover) Abort(reason string) error {
	return m.w.Write(TypeAbort, []byte(truncate([]byte(reason), 1000)))
}

// Status sends the entries (JSON, the caller's: this process first, then
// those it relays) as one Status record, under a write deadline of its own.
func (m *Mover) Status(entries []json.RawMessage) error {
	if len(entries) > MaxStatusEntries {
		entries = entries[:MaxStatusEntries]
	}
	b, err := json.Marshal(entries)
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	if len(b) > MaxStatusBytes {
		return fmt.Errorf("status: %d bytes: %w", len(b), ErrTooLarge)
	}
	m.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return m.w.Write(TypeStatus, b)
}

// Close closes the connection: the new process sees the end of the
// Status records.
func (m *Mover) Close() error { return m.c.Close() }

// Receive reads the items the old process sends after Ready, up to End,
// before deadline. It refuses (closing every descriptor received) a batch
// that is empty, whose descriptors do not match its items, or that would
// pass maxItems items in all (0: DefaultMaxItems); an Abort from the old
// process ends it too. After an error the stream is unusable but for
// AwaitCommit, and nothing received stays open.
func (c *Conn) Receive(deadline time.Time, maxItems int) (*Received, error) {
	if !c.sessions {
		return nil, errors.New("handover: the old process moves no sessions")
	}
	if maxItems <= 0 {
		maxItems = DefaultMaxItems
	}
	c.c.SetDeadline(deadline)
	c.r.SetMaxPayload(MaxBatchBytes)
	got := &Received{}
	n := 0
	for {
		rec, err := c.r.Read()
		if err != nil {
			got.Close()
			return nil, fmt.Errorf("receive sessions: %w", err)
		}
		var per int
		var to *[]Item
		switch rec.Type {
		case TypeSessions:
			per, to = 2, &got.Sessions
		case TypeConns:
			per, to = 1, &got.Conns
		case TypeEnd:
			rec.Close()
			return got, nil
		case TypeAbort:
			rec.Close()
			got.Close()
			return nil, fmt.Errorf("old process: %s: %w", truncate(rec.Payload, 200), ErrAborted)
		default: // a later version's record: not understood, not kept
			rec.Close()
			if n++; n > maxItems {
				got.Close()
				return nil, fmt.Errorf("receive sessions: more than %d records: %w", maxItems, ErrTooLarge)
			}
			continue
		}
		items, err := batch(&rec, per, maxItems-n)
		if err != nil {
			rec.Close()
			got.Close()
			return nil, err
		}
		n += len(items)
		*to = append(*to, items...)
	}
}

// batch splits a Sessions or Conns record into its items, per descriptors
// each; at most room of them. On error the record's descriptors are still
// its own.
func batch(rec *Record, per, room int) ([]Item, error) {
	var metas []json.RawMessage
	if err := readJSON(rec, &metas); err != nil {
		return nil, err
	}
	switch {
	case len(metas) == 0:
		return nil, fmt.Errorf("read %s: an empty batch: %w", rec.Type, ErrMalformed)
	case len(metas) > room:
		return nil, fmt.Errorf("read %s: %d items past the bound: %w", rec.Type, len(metas)-room, ErrTooLarge)
	case len(rec.FDs) != per*len(metas):
		return nil, fmt.Errorf("read %s: %d descriptors for %d items: %w", rec.Type, len(rec.FDs), len(metas), ErrFiles)
	}
	items := make([]Item, len(metas))
	for i, m := range metas {
		items[i] = Item{Meta: m, FDs: rec.FDs[i*per : (i+1)*per : (i+1)*per]}
	}
	rec.FDs = nil
	return items, nil
}

// Taken tells the old process that this one holds every item received;
// nothing of them runs until AwaitCommit says so.
func (c *Conn) Taken() error { return c.w.Write(TypeTaken, nil) }

// Refuse tells the old process that this one will not take the items
// (after Receive), and why: it keeps them. The connection stays open for
// Status.
func (c *Conn) Refuse(reason string) error {
	return c.w.Write(TypeAbort, []byte(truncate([]byte(reason), 1000)))
}

// AwaitCommit waits, until deadline, for the old process's word after
// Taken. Committed: run the items. Orphaned: the stream ended and the old
// process has exited: run them too. Aborted (with why): close the copies.
// A stream that breaks while the old process lives is Aborted: it keeps
// the items, since it never sent Commit.
func (c *Conn) AwaitCommit(deadline time.Time) (Verdict, error) {
	c.c.SetDeadline(deadline)
	c.r.SetMaxPayload(4 << 10)
	rec, err := c.r.Read()
	if err == nil {
		rec.Close()
		switch rec.Type {
		case TypeCommit:
			return Committed, nil
		case TypeAbort:
			return Aborted, fmt.Errorf("old process: %s: %w", truncate(rec.Payload, 200), ErrAborted)
		}
		return Aborted, fmt.Errorf("got %s, want commit: %w", rec.Type, ErrMalformed)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
		for end := time.Now().Add(goneWait); ; time.Sleep(10 * time.Millisecond) {
			if c.oldGone() {
				return Orphaned, err
			}
			if time.Now().After(end) {
				break
			}
		}
	}
	return Aborted, fmt.Errorf("wait for commit: %w", err)
}

// Statuses reads the old process's Status records and calls f with each
// one's entries, until the stream ends (nil: the old process exited) or
// fails, or no record came for statusSilence. Other records before and
// among them are skipped, their descriptors closed: the rest of a session
// phase this process refused part way (the old process sends its batches
// to their End before it reads the refusal), a late verdict, a later
// version's record. It closes the connection.
func (c *Conn) Statuses(f func([]json.RawMessage)) error {
	defer c.c.Close()
	c.r.SetMaxPayload(MaxBatchBytes) // the largest record that may precede them
	for {
		c.c.SetReadDeadline(time.Now().Add(statusSilence))
		rec, err := c.r.Read()
		if errors.Is(err, io.EOF) || isReset(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read status: %w", err)
		}
		if rec.Type != TypeStatus {
			rec.Close() // skipped
			continue
		}
		if len(rec.FDs) > 0 {
			rec.Close()
			return fmt.Errorf("read status: descriptors with a %s: %w", rec.Type, ErrFiles)
		}
		if len(rec.Payload) > MaxStatusBytes {
			return fmt.Errorf("read status: %d bytes, at most %d: %w", len(rec.Payload), MaxStatusBytes, ErrTooLarge)
		}
		var entries []json.RawMessage
		if err := readJSON(&rec, &entries); err != nil {
			return err
		}
		if len(entries) > MaxStatusEntries {
			entries = entries[:MaxStatusEntries]
		}
		f(entries)
	}
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// isReset reports whether err is the peer's end of a socket closed with
// data unread: how a process that exits mid-stream often shows.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
