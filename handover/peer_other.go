//go:build !linux

package handover

import (
	"errors"
	"net"
)

// PeerCred needs SO_PEERCRED: elsewhere no peer is ever accepted, so no
// hand-over happens and the old process goes on serving.
func PeerCred(c *net.UnixConn) (*Cred, error) {
	return nil, errors.New("handover: peer credentials need Linux")
}
