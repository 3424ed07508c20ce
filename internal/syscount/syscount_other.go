//go:build !linux

package syscount

import "errors"

var errNotLinux = errors.New("count system calls: perf events need Linux")

// Counter counts system calls; only on Linux.
type Counter struct{}

// Check fails: perf events are Linux's.
func Check() error { return errNotLinux }

// Open fails: perf events are Linux's.
func Open() (*Counter, error) { return nil, errNotLinux }

// OpenProcs fails: perf events are Linux's.
func OpenProcs([]int) (*Counter, error) { return nil, errNotLinux }

// Enable does nothing.
func (c *Counter) Enable() error { return errNotLinux }

// Count is 0.
func (c *Counter) Count() (int64, error) { return 0, nil }

// Stop is 0.
func (c *Counter) Stop() (int64, error) { return 0, errNotLinux }

// Close does nothing.
func (c *Counter) Close() {}
