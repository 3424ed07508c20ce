//go:build !linux

package syscount

import "errors"

// Counter counts system calls; only on Linux.
type Counter struct{}

// Open fails: perf events are Linux's.
func Open() (*Counter, error) {
	return nil, errors.New("count system calls: perf events need Linux")
}

// Count is 0.
func (c *Counter) Count() (int64, error) { return 0, nil }

// Close does nothing.
func (c *Counter) Close() {}
