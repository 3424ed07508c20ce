//go:build !linux

package proxy

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"syscall"
)

// httpLoops stand in off Linux, where newHTTPLoops fails: every client
// connection keeps its goroutine.
type httpLoops struct{}

type httpLoop struct{}

func newHTTPLoops(*Server, int) (*httpLoops, error) {
	return nil, fmt.Errorf("proxy: http loops on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func (ls *httpLoops) Close()                       {}
func (ls *httpLoops) drain()                       {}
func (ls *httpLoops) park(c *conn, full bool) bool { panic("proxy: http loops off Linux") }
func (ls *httpLoops) remove(*conn)                 {}
func (l *httpLoop) forget(*conn)                   {}
func (ls *httpLoops) warm(*conn) bool              { panic("proxy: http loops off Linux") }
func (ls *httpLoops) warmUp(*conn) error           { panic("proxy: http loops off Linux") }

// coldConn stands in off Linux, where no connection is cold.
type coldConn struct{}

func (cc *coldConn) bind(*conn) (net.Conn, syscall.RawConn) { panic("proxy: http loops off Linux") }
func (cc *coldConn) warmUp() error                          { panic("proxy: http loops off Linux") }
func (cc *coldConn) reset()                                 {}

// closeFD is never called off Linux: no connection is cold there.
func closeFD(int32) {}
