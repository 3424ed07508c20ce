//go:build !linux

package sockio

import (
	"net"
	"syscall"
)

// RawIO is never set off Linux: conns are read and written through net.Conn.
type RawIO struct{}

func (r *RawIO) Set(net.Conn, syscall.RawConn) {}

func RawConnOf(net.Conn) syscall.RawConn { return nil }

func (r *RawIO) Use() bool                    { return false }
func (r *RawIO) read([]byte) (int, error)     { panic("sockio: raw I/O off Linux") }
func (r *RawIO) write([]byte) (int, error)    { panic("sockio: raw I/O off Linux") }
func (r *RawIO) SendBeforeRead([]byte)        { panic("sockio: raw I/O off Linux") }
func (r *RawIO) Unsent() []byte               { return nil }
func (r *RawIO) tryRead([]byte) (int, error)  { panic("sockio: raw I/O off Linux") }
func (r *RawIO) tryWrite([]byte) (int, error) { panic("sockio: raw I/O off Linux") }
func (r *RawIO) sending() bool                { return false }

// RawTCP is never made off Linux.
type RawTCP struct{ *net.TCPConn }

func WithRawIO(c net.Conn) net.Conn { return c }
