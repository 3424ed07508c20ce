//go:build !linux

package proxy

import (
	"net"
	"syscall"
)

// rawIO is never set off Linux: conns are read and written through net.Conn.
type rawIO struct{}

func (r *rawIO) set(net.Conn, syscall.RawConn) {}

func rawConnOf(net.Conn) syscall.RawConn { return nil }

func (r *rawIO) use() bool                 { return false }
func (r *rawIO) read([]byte) (int, error)  { panic("proxy: rawIO off Linux") }
func (r *rawIO) write([]byte) (int, error) { panic("proxy: rawIO off Linux") }
func (r *rawIO) sendBeforeRead([]byte)     { panic("proxy: rawIO off Linux") }
func (r *rawIO) unsent() []byte            { return nil }

// rawTCP is never made off Linux.
type rawTCP struct{ *net.TCPConn }

func withRawIO(c net.Conn) net.Conn { return c }
