//go:build !linux

package splice

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/rs/zerolog"
)

// Loops stands in for the event-loop Engine off Linux, where
// NewLoops fails: use NewGo.
type Loops struct{ fallback Engine }

var _ Engine = (*Loops)(nil)

// NewLoops fails off Linux with errors.ErrUnsupported.
func NewLoops(loops, bufSize int, log zerolog.Logger) (*Loops, error) {
	return nil, fmt.Errorf("proxy: splice loops on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// Start implements Engine with the goroutine Engine.
func (ls *Loops) Start(sess *Session, done Ender) { ls.fallback.Start(sess, done) }

// Close does nothing.
func (ls *Loops) Close() {}

// Frozen stands in off Linux, where no session is ever frozen.
type Frozen struct{}

// FDs returns -1, -1.
func (f *Frozen) FDs() (client, node int) { return -1, -1 }

// Moved returns the zero Moved.
func (f *Frozen) Moved() Moved { return Moved{} }

// Ender returns nil.
func (f *Frozen) Ender() Ender { return nil }

// Freeze returns nil: off Linux no session runs on a loop.
func (ls *Loops) Freeze() []*Frozen { return nil }

// Thaw does nothing.
func (ls *Loops) Thaw(fs []*Frozen) {}

// Release does nothing.
func (ls *Loops) Release(fs []*Frozen) {}

// Adopt fails off Linux with errors.ErrUnsupported; client and node are
// still the caller's.
func (ls *Loops) Adopt(client, node int, m Moved, reg Registry, done Ender) (*Frozen, error) {
	return nil, fmt.Errorf("proxy: splice adopt on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
