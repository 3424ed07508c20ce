//go:build !linux

package proxy

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/rs/zerolog"
)

// LoopSplicer stands in for the event-loop Splicer off Linux, where
// NewLoopSplicer fails: use NewGoSplicer.
type LoopSplicer struct{ fallback Splicer }

var _ Splicer = (*LoopSplicer)(nil)

// NewLoopSplicer fails off Linux with errors.ErrUnsupported.
func NewLoopSplicer(loops, bufSize int, log zerolog.Logger) (*LoopSplicer, error) {
	return nil, fmt.Errorf("proxy: splice loops on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// Start implements Splicer with the goroutine Splicer.
func (ls *LoopSplicer) Start(sess *Session, done Ender) { ls.fallback.Start(sess, done) }

// Close does nothing.
func (ls *LoopSplicer) Close() {}
