package handover

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"
)

// EnvAddr is the environment variable through which the old process tells
// the new one the address of its hand-over socket.
const EnvAddr = "TETHER_HANDOVER"

// Hello is the first record each end sends: who it is, and what it can do
// beyond the listeners and node states every version hands over.
type Hello struct {
	PID     int      `json:"pid"`
	Version string   `json:"version"`        // the binary's version
	Caps    []string `json:"caps,omitempty"` // capabilities, such as CapSessions
}

// CapSessions is the capability to move live sessions and idle
// connections after Ready (Mover, Conn.Receive). The session phase runs
// only when both Hellos name it: a binary that does not know it (whose
// Hello has no caps, which it ignores in the other's) gets and gives the
// listeners and node states alone, and the old process drains as before.
const CapSessions = "sessions"

// Can reports whether h names the capability c.
func (h Hello) Can(c string) bool { return slices.Contains(h.Caps, c) }

// Listener is one listening socket, named by its role in the caller's
// configuration ("listen", "tls-listen", "admin").
type Listener struct {
	Name string   `json:"name"`
	Addr string   `json:"addr"` // where it listens, for logs and checks
	File *os.File `json:"-"`    // the socket; in State from Take, owned by the caller
}

// NodeState is one node's facts as the old process had them: its health
// verdict and the operator's drain. A node is known by name and URL.
type NodeState struct {
	Name    string    `json:"name"`
	URL     string    `json:"url"`
	Down    bool      `json:"down,omitempty"`
	Drained bool      `json:"drained,omitempty"`
	Since   time.Time `json:"since"`
}

// State is what the old process hands over.
type State struct {
	From      Hello // the sender
	Listeners []Listener
	Nodes     []NodeState
}

// Close closes the listeners' files.
func (s *State) Close() {
	for _, l := range s.Listeners {
		if l.File != nil {
			l.File.Close()
		}
	}
}

// writeJSON sends v as the payload of a record of type t.
func writeJSON(w *Writer, t Type, v any, files ...*os.File) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", t, err)
	}
	return w.Write(t, b, files...)
}

// readJSON decodes the payload of rec into v.
func readJSON(rec *Record, v any) error {
	if err := json.Unmarshal(rec.Payload, v); err != nil {
		return fmt.Errorf("decode %s: %w: %w", rec.Type, err, ErrMalformed)
	}
	return nil
}

// expect reads the next record and refuses any type but t; an Abort
// record's reason becomes the error.
func expect(r *Reader, t Type) (Record, error) {
	rec, err := r.Read()
	if err != nil {
		return rec, err
	}
	if rec.Type == t {
		return rec, nil
	}
	rec.Close()
	if rec.Type == TypeAbort {
		return rec, fmt.Errorf("peer gave up: %s", truncate(rec.Payload, 200))
	}
	return rec, fmt.Errorf("got %s, want %s: %w", rec.Type, t, ErrMalformed)
}

// truncate returns at most n bytes of b as text, for error messages.
func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
