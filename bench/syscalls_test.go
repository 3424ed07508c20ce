package bench

import (
	"bytes"
	"os/exec"
	"testing"
	"time"
)

func TestParsePerfCount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, out string
		want      int64
		bad       bool
	}{
		// perf stat -x, -D -1 --control …, as captured.
		{"counted", "Events disabled\nEvents enabled\nEvents disabled\n684827,,raw_syscalls:sys_enter,494037246,100.00,,\n", 684827, false},
		{"not counted", "<not counted>,,raw_syscalls:sys_enter,0,100.00,,\n", 0, false},
		{"not supported", "<not supported>,,raw_syscalls:sys_enter,0,100.00,,\n", 0, true},
		{"another event", "12,,cycles,1000,100.00,,\n", 0, true},
		{"nothing", "", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parsePerfCount([]byte(tc.out))
			if got != tc.want || (err != nil) != tc.bad {
				t.Errorf("got %d, %v; want %d, error %v", got, err, tc.want, tc.bad)
			}
		})
	}
}

// TestSyscallCounter counts the system calls of a wsgen process echoing
// through a node: some, and a few per message at most (only that process
// is counted). Skipped where perf cannot count the tracepoint.
func TestSyscallCounter(t *testing.T) {
	t.Parallel()
	if err := checkPerf(t.Context()); err != nil {
		t.Skipf("system calls not countable here: %v", err)
	}
	bin := buildWSGen(t)
	n := startNode(t, NodeConfig{Name: "CB_Server_1"})
	cmd := exec.Command(bin, "-a", n.addr, "-s", "2", "-m", "64", "-d", "1")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	c, err := startSyscallCounter([]int{cmd.Process.Pid})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.enable(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	select {
	case waitErr = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		waitErr = <-done
	}
	calls, err := c.stop()
	if err != nil || waitErr != nil {
		t.Fatalf("count %d, %v; wsgen %v", calls, err, waitErr)
	}
	r, err := ParseWSGen(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if calls <= 0 || r.Messages == 0 || calls > 20*r.Messages {
		t.Errorf("%d system calls for %d messages", calls, r.Messages)
	}
}
