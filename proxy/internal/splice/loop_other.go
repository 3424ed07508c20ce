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
