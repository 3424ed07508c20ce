package handover

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
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

// Check reports whether the credentials cred are those of p.
func (p Peer) Check(cred *unix.Ucred) error {
	if cred == nil {
		return fmt.Errorf("no credentials: %w", ErrPeer)
	}
	if cred.Uid != p.UID {
		return fmt.Errorf("peer pid %d runs as uid %d, not %d: %w", cred.Pid, cred.Uid, p.UID, ErrPeer)
	}
	if p.PID != 0 && int(cred.Pid) != p.PID {
		return fmt.Errorf("peer pid %d is not the new process %d: %w", cred.Pid, p.PID, ErrPeer)
	}
	return nil
}

// PeerCred returns the credentials the kernel recorded for the process at
// the other end of c when it connected (SO_PEERCRED).
func PeerCred(c *net.UnixConn) (*unix.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var serr error
	if err := rc.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	return cred, nil
}
