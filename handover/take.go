package handover

import (
	"fmt"
	"net"
	"os"
	"time"
)

// Conn is the new process's end of the hand-over: between Take and Ready,
// and, when both ends can move sessions (Sessions), after it (move.go).
type Conn struct {
	c        *net.UnixConn
	w        *Writer
	r        *Reader
	from     Hello       // the old process
	sessions bool        // both Hellos name CapSessions
	oldGone  func() bool // whether the old process has exited (tests replace it)
}

// Take connects to the old process's hand-over socket at addr (the value
// of EnvAddr), checks that the process listening there is this one's
// parent under the same UID, introduces itself as self and receives the
// old process's State. timeout bounds it all, and the Ready after. The
// listeners' files in State are the caller's; after an error nothing
// received stays open.
func Take(addr string, self Hello, timeout time.Duration) (*State, *Conn, error) {
	deadline := time.Now().Add(timeout)
	d := net.Dialer{Deadline: deadline}
	nc, err := d.Dial("unix", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := nc.(*net.UnixConn)
	cred, err := PeerCred(c)
	if err == nil {
		err = Peer{UID: uint32(os.Getuid()), PID: os.Getppid()}.Check(cred)
	}
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	c.SetDeadline(deadline)
	hc := newConn(c, self)
	st, err := hc.take(self)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return st, hc, nil
}

// newConn is the new process's end on c, before the Hellos.
func newConn(c *net.UnixConn, self Hello) *Conn {
	return &Conn{c: c, w: NewWriter(c), r: NewReader(c, 0), oldGone: parentGone(os.Getppid())}
}

// parentGone reports whether the process parent, which started this one,
// has exited: this process then has another parent.
func parentGone(parent int) func() bool {
	return func() bool { return os.Getppid() != parent }
}

// take introduces this process and receives the old process's State.
func (hc *Conn) take(self Hello) (*State, error) {
	w, r := hc.w, hc.r
	if err := writeJSON(w, TypeHello, self); err != nil {
		return nil, err
	}
	st := &State{}
	rec, err := expect(r, TypeHello)
	if err == nil {
		err = readJSON(&rec, &st.From)
		rec.Close()
	}
	if err != nil {
		return nil, err
	}
	hc.from = st.From
	hc.sessions = self.Can(CapSessions) && st.From.Can(CapSessions)
	for {
		rec, err := r.Read()
		if err != nil {
			st.Close()
			return nil, err
		}
		switch rec.Type {
		case TypeListener:
			var l Listener
			err = readJSON(&rec, &l)
			if err == nil && len(rec.FDs) != 1 {
				err = fmt.Errorf("listener %s: %d descriptors, want 1: %w", l.Name, len(rec.FDs), ErrFiles)
			}
			if err != nil {
				rec.Close()
				st.Close()
				return nil, err
			}
			l.File = os.NewFile(uintptr(rec.FDs[0]), "handover-"+l.Name)
			st.Listeners = append(st.Listeners, l)
		case TypeNodes:
			err := readJSON(&rec, &st.Nodes)
			rec.Close() // it carries none: any that came are not kept
			if err != nil {
				st.Close()
				return nil, err
			}
		case TypeEnd:
			rec.Close()
			return st, nil
		case TypeAbort:
			rec.Close()
			st.Close()
			return nil, fmt.Errorf("old process gave up: %s", truncate(rec.Payload, 200))
		default:
			rec.Close() // a later version's record: not understood, not kept
		}
	}
}

// Sessions reports whether both ends can move sessions: after Ready, the
// old process sends them (Receive). Otherwise Ready ends the hand-over.
func (c *Conn) Sessions() bool { return c.sessions }

// From is the old process's Hello.
func (c *Conn) From() Hello { return c.from }

// Ready tells the old process that this one serves: it stops accepting.
// Without Sessions, Ready closes the connection and the old process
// drains; with it, the session phase follows on the same connection.
func (c *Conn) Ready() error {
	err := c.w.Write(TypeReady, nil)
	if !c.sessions || err != nil {
		c.c.Close()
	}
	return err
}

// Abort tells the old process this one gives up, and why; the old one
// goes on serving. It closes the connection. (After Ready, Refuse says
// no to the sessions instead.)
func (c *Conn) Abort(reason string) error {
	defer c.c.Close()
	return c.w.Write(TypeAbort, []byte(reason))
}
