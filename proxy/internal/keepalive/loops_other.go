//go:build !linux

package keepalive

import (
	"errors"
	"fmt"
	"runtime"
)

// Loops stand in off Linux, where New fails: every client connection keeps
// its goroutine.
type Loops struct{}

type loop struct{}

// TestHookDrain is never run off Linux.
var TestHookDrain func()

// New fails off Linux.
func New(Options) (*Loops, error) {
	return nil, fmt.Errorf("keepalive: epoll loops on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func (ls *Loops) Close()               {}
func (ls *Loops) Drain()               {}
func (ls *Loops) Park(Conn, bool) bool { panic("keepalive: no loops off Linux") }
func (ls *Loops) Remove(Conn)          {}
func (ls *Loops) Take(Conn) bool       { return false }
func (ls *Loops) Idle() int            { return 0 }
func (l *loop) forget(Conn)            {}
