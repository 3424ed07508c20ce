//go:build !linux

package sockio

import (
	"net"
	"syscall"
)

// Warmer makes a cold connection a net.Conn; off Linux no connection is
// cold.
type Warmer interface {
	WarmUp() (net.Conn, syscall.RawConn, error)
}

// ColdConn stands in off Linux, where no connection is cold.
type ColdConn struct{}

func (cc *ColdConn) Bind(int, Warmer) (net.Conn, syscall.RawConn) {
	panic("sockio: no cold connections off Linux")
}
func (cc *ColdConn) WarmUp() error { panic("sockio: no cold connections off Linux") }
func (cc *ColdConn) Reset()        {}

// HungUp is never asked off Linux: no connection is cold there.
func HungUp(int) bool { return false }
