package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// syscallEvent is the tracepoint perf counts: every system call entered.
const syscallEvent = "raw_syscalls:sys_enter"

// Bounds of the perf process of a syscallCounter.
const (
	perfAckTimeout  = 5 * time.Second // an answer to enable or disable
	perfStopTimeout = 5 * time.Second // perf's exit after SIGINT; SIGKILL follows
)

// errPerfAck is perf not acknowledging a control command in time.
var errPerfAck = errors.New("bench: perf did not acknowledge")

// checkPerf reports whether `perf stat` can count syscallEvent here: perf
// installed, the tracepoint present and allowed (root, or
// kernel.perf_event_paranoid low enough).
func checkPerf(ctx context.Context) error {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return fmt.Errorf("perf not found (apt-get install -y linux-perf)")
	}
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, perf, "stat", "-x,", "-e", syscallEvent, "--", "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("perf stat -e %s: %w: %s", syscallEvent, err, strings.TrimSpace(firstBytes(out, 300)))
	}
	if n, err := parsePerfCount(out); err != nil || n <= 0 {
		return fmt.Errorf("perf stat -e %s counted nothing: %s", syscallEvent, strings.TrimSpace(firstBytes(out, 300)))
	}
	return nil
}

// syscallCounter counts the system calls of a set of processes (their
// threads, those created later included) with perf stat, started with its
// events off and switched on and off through its control pipes, so the
// count covers exactly the load.
type syscallCounter struct {
	cmd    *exec.Cmd
	ctl    *os.File      // perf reads commands from it
	ack    *bufio.Reader // perf answers "ack" on it
	ackF   *os.File
	out    bytes.Buffer  // perf's stderr: the counts (-x,); read after exited
	exited chan struct{} // closed by waitLoop
}

// startSyscallCounter starts perf on pids, its events off.
func startSyscallCounter(pids []int) (*syscallCounter, error) {
	ids := make([]string, len(pids))
	for i, p := range pids {
		ids[i] = strconv.Itoa(p)
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start perf: %w", err)
	}
	ackR, ackW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return nil, fmt.Errorf("start perf: %w", err)
	}
	// ExtraFiles are the child's descriptors 3 (commands) and 4 (acks).
	cmd := exec.Command("perf", "stat", "-x,", "-D", "-1", "--control", "fd:3,4",
		"-e", syscallEvent, "-p", strings.Join(ids, ","))
	cmd.ExtraFiles = []*os.File{ctlR, ackW}
	c := &syscallCounter{cmd: cmd, ctl: ctlW, ackF: ackR, ack: bufio.NewReader(ackR), exited: make(chan struct{})}
	cmd.Stderr = &c.out
	err = cmd.Start()
	ctlR.Close()
	ackW.Close()
	if err != nil {
		ctlW.Close()
		ackR.Close()
		return nil, fmt.Errorf("start perf: %w", err)
	}
	go c.waitLoop()
	return c, nil
}

// waitLoop reaps perf; it is the only caller of cmd.Wait.
func (c *syscallCounter) waitLoop() {
	_ = c.cmd.Wait()
	close(c.exited)
}

// command sends word ("enable", "disable") and waits for perf's ack.
func (c *syscallCounter) command(word string) error {
	if _, err := io.WriteString(c.ctl, word+"\n"); err != nil {
		return fmt.Errorf("perf %s: %w", word, err)
	}
	_ = c.ackF.SetReadDeadline(time.Now().Add(perfAckTimeout))
	line, err := c.ack.ReadString('\n')
	if err != nil {
		return fmt.Errorf("perf %s: %w: %w", word, errPerfAck, err)
	}
	// perf writes "ack\n" with its terminating NUL: the NUL of the
	// previous answer starts this one.
	if strings.Trim(line, "\x00 \n") != "ack" {
		return fmt.Errorf("perf %s: %w: %q", word, errPerfAck, line)
	}
	return nil
}

// enable starts counting.
func (c *syscallCounter) enable() error { return c.command("enable") }

// stop stops counting, ends perf by its PID and returns the count.
func (c *syscallCounter) stop() (int64, error) {
	cmdErr := c.command("disable")
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	t := time.NewTimer(perfStopTimeout)
	defer t.Stop()
	select {
	case <-c.exited:
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.ctl.Close()
	c.ackF.Close()
	if cmdErr != nil {
		return 0, cmdErr
	}
	return parsePerfCount(c.out.Bytes())
}

// parsePerfCount reads the count of syscallEvent in perf stat -x, output
// ("684827,,raw_syscalls:sys_enter,494037246,100.00,,"). "<not counted>"
// (the processes never ran while counting) is 0.
func parsePerfCount(out []byte) (int64, error) {
	for line := range strings.SplitSeq(string(out), "\n") {
		f := strings.Split(strings.TrimSpace(line), ",")
		if len(f) < 3 || f[2] != syscallEvent {
			continue
		}
		if f[0] == "<not counted>" {
			return 0, nil
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("perf count %q: %w", f[0], err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("perf stat printed no %s count: %q", syscallEvent, firstBytes(out, 300))
}
