//go:build !linux

package bench

func checkSyscallCounting() error { return errNoSyscallCounting }

func startSyscallCounter([]int) (*syscallCounter, error) { return nil, errNoSyscallCounting }

func (c *syscallCounter) enable() error { return errNoSyscallCounting }

func (c *syscallCounter) stop() (int64, error) { return 0, errNoSyscallCounting }
