package handover

import (
	"errors"
	"fmt"
)

// ErrPeer means the process at the other end of the hand-over socket is not
// the one allowed: it gets nothing.
var ErrPeer = errors.New("handover: peer not allowed")

// Peer is the process allowed at the other end: its user, and its process
// ID when known.
type Peer struct {
	UID uint32
	PID int // 0: any process of UID
}

// Cred are the credentials of the process at the other end of a unix
// socket, as the kernel recorded them when it connected.
type Cred struct {
	PID int
	UID uint32
}

// Check reports whether the credentials cred are those of p.
func (p Peer) Check(cred *Cred) error {
	if cred == nil {
		return fmt.Errorf("no credentials: %w", ErrPeer)
	}
	if cred.UID != p.UID {
		return fmt.Errorf("peer pid %d runs as uid %d, not %d: %w", cred.PID, cred.UID, p.UID, ErrPeer)
	}
	if p.PID != 0 && cred.PID != p.PID {
		return fmt.Errorf("peer pid %d is not the new process %d: %w", cred.PID, p.PID, ErrPeer)
	}
	return nil
}
