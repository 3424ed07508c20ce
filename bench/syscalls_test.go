package bench

import (
	"io"
	"os/exec"
	"testing"
)

// TestSyscallCounter counts the system calls of a shell that, once the
// counter is on, starts dd copying 20,000 single bytes: dd is a process
// created after the counter was opened, as a thread the peer starts under
// load is, and its 40,000 reads and writes are counted. Skipped where perf
// events are not allowed.
func TestSyscallCounter(t *testing.T) {
	t.Parallel()
	if err := checkSyscallCounting(); err != nil {
		t.Skipf("system calls not countable here: %v", err)
	}
	cmd := exec.Command("sh", "-c", "read go && dd if=/dev/zero of=/dev/null bs=1 count=20000 2>/dev/null")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	c, err := startSyscallCounter([]int{cmd.Process.Pid})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.enable(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	calls, err := c.stop()
	if err != nil {
		t.Fatal(err)
	}
	if calls < 40_000 || calls > 60_000 {
		t.Errorf("%d system calls, want dd's 40,000 and a few more", calls)
	}
}

func TestSyscallCounterNoProcess(t *testing.T) {
	t.Parallel()
	if err := checkSyscallCounting(); err != nil {
		t.Skipf("system calls not countable here: %v", err)
	}
	if c, err := startSyscallCounter([]int{-1}); err == nil {
		_, _ = c.stop()
		t.Error("counter opened on no process")
	}
}
