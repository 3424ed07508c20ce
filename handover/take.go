package handover

import (
	"fmt"
	"net"
	"os"
	"time"
)

// Conn is the new process's end of the hand-over, between Take and Ready.
type Conn struct {
	c *net.UnixConn
	w *Writer
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
	st, w, err := take(c, self, deadline)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return st, &Conn{c: c, w: w}, nil
}

func take(c *net.UnixConn, self Hello, deadline time.Time) (*State, *Writer, error) {
	cred, err := PeerCred(c)
	if err == nil {
		err = Peer{UID: uint32(os.Getuid()), PID: os.Getppid()}.Check(cred)
	}
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(deadline)
	w, r := NewWriter(c), NewReader(c, 0)
	if err := writeJSON(w, TypeHello, self); err != nil {
		return nil, nil, err
	}
	st := &State{}
	rec, err := expect(r, TypeHello)
	if err == nil {
		err = readJSON(&rec, &st.From)
	}
	if err != nil {
		return nil, nil, err
	}
	for {
		rec, err := r.Read()
		if err != nil {
			st.Close()
			return nil, nil, err
		}
		switch rec.Type {
		case TypeListener:
			var l Listener
			err = readJSON(&rec, &l)
			if err == nil && len(rec.Files) != 1 {
				err = fmt.Errorf("listener %s: %d descriptors, want 1: %w", l.Name, len(rec.Files), ErrFiles)
			}
			if err != nil {
				rec.Close()
				st.Close()
				return nil, nil, err
			}
			l.File = rec.Files[0]
			st.Listeners = append(st.Listeners, l)
		case TypeNodes:
			if err := readJSON(&rec, &st.Nodes); err != nil {
				st.Close()
				return nil, nil, err
			}
		case TypeEnd:
			return st, w, nil
		case TypeAbort:
			st.Close()
			return nil, nil, fmt.Errorf("old process gave up: %s", truncate(rec.Payload, 200))
		default:
			rec.Close() // a later version's record: not understood, not kept
		}
	}
}

// Ready tells the old process that this one serves: it stops accepting
// and drains. Ready closes the connection.
func (c *Conn) Ready() error {
	defer c.c.Close()
	return c.w.Write(TypeReady, nil)
}

// Abort tells the old process this one gives up, and why; the old one
// goes on serving. It closes the connection.
func (c *Conn) Abort(reason string) error {
	defer c.c.Close()
	return c.w.Write(TypeAbort, []byte(reason))
}
