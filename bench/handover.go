package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// The hand-over benchmark: one tether in front of two node processes,
// holding N plain WebSockets (N/2 co-browse sessions) that each send a
// numbered message every Interval; SIGUSR2 hands them to a new process.
// It measures how long the hand-over took (from the signal until the old
// process logs it done, and the old process's own figure) and the pause a
// WebSocket saw (the largest delay of its messages around the swap), and
// checks that no session was closed and no stream lost a message.

// HandoverConfig is a hand-over benchmark.
type HandoverConfig struct {
	TetherBin string // the tether binary; it hands over to itself
	BenchBin  string // tether-bench, for the nodes ("": this executable)
	// Sessions are the plain WebSocket counts measured, each with a fresh
	// tether: even numbers (customer and agent of a session).
	Sessions []int
	// Interval is the time between two messages of one WebSocket.
	Interval time.Duration
	// Swaps is how many hand-overs run one after another per count (each
	// to the process the last one started).
	Swaps int
	Dir   string // where processes run and log ("": a temporary directory)
	Out   io.Writer
}

// MaxHandoverSessions bounds Sessions: tether holds two descriptors per
// WebSocket and this process one, under a 20,000 per-process limit.
const MaxHandoverSessions = 9000

// HandoverRow is one hand-over of one count.
type HandoverRow struct {
	Sessions int           // plain WebSockets held
	Swap     int           // 1 for the first hand-over of the count
	Took     time.Duration // SIGUSR2 until the old process logged the hand-over done
	Logged   time.Duration // the old process's own figure ("dur" of that line), if it logs one
	Handed   int64         // sessions the old process says it handed
	Stats    HeldStats     // the population around the swap (pauses since the signal)
}

// msgHandedOver is the old process's log line once the new one has the
// sessions.
const msgHandedOver = "hand-over done: the new process serves; retiring"

// RunHandover runs the benchmark and writes a table to cfg.Out.
func RunHandover(ctx context.Context, cfg HandoverConfig) ([]HandoverRow, error) {
	if cfg.TetherBin == "" {
		return nil, errors.New("handover: no tether binary")
	}
	// Processes run in their own directories: a relative path would not
	// name the binary there.
	bin, err := filepath.Abs(cfg.TetherBin)
	if err != nil {
		return nil, fmt.Errorf("handover: %w", err)
	}
	cfg.TetherBin = bin
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Swaps <= 0 {
		cfg.Swaps = 1
	}
	for _, n := range cfg.Sessions {
		if n < 2 || n%2 != 0 || n > MaxHandoverSessions {
			return nil, fmt.Errorf("handover: %d sessions: want an even count from 2 to %d", n, MaxHandoverSessions)
		}
	}
	if cfg.BenchBin == "" {
		if cfg.BenchBin, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("handover: %w", err)
		}
	}
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "tether-handover")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg.Dir = dir
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	var names []string
	var addrs []string
	for i := range 2 {
		name := "CB_Server_" + strconv.Itoa(i+1)
		p, addr, err := startNodeProc(cfg.BenchBin, name, cfg.Dir, "", nil)
		if err != nil {
			return nil, err
		}
		defer p.stop()
		names, addrs = append(names, name), append(addrs, addr)
	}
	var rows []HandoverRow
	for k, n := range cfg.Sessions {
		r, err := handoverCount(ctx, cfg, n, k, names, addrs)
		rows = append(rows, r...)
		if err != nil {
			return rows, err
		}
	}
	writeHandoverTable(cfg.Out, rows, cfg.Interval)
	return rows, nil
}

// handoverCount measures cfg.Swaps hand-overs of n WebSockets with a fresh
// tether (run k).
func handoverCount(ctx context.Context, cfg HandoverConfig, n, k int, names, addrs []string) ([]HandoverRow, error) {
	dir := filepath.Join(cfg.Dir, "tether-"+strconv.Itoa(k))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	argv := []string{cfg.TetherBin, "--listen", addr, "--admin", "", "--access-log=false", "--log-level", "info",
		"--health-interval", "1h", "--drain-timeout", "5s"}
	for i, name := range names {
		argv = append(argv, "--node", name+"=http://"+addrs[i])
	}
	p, err := startProc("tether", dir, "", nil, argv...)
	if err != nil {
		return nil, err
	}
	pids := []int{p.pid()}
	defer func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGTERM)
		}
		p.stop()
	}()
	if err := waitReady(ctx, p, addr); err != nil {
		return nil, err
	}
	h, err := Hold(ctx, HeldConfig{Addr: addr, Pairs: n / 2, Nodes: names, Interval: cfg.Interval, Prefix: "ho" + strconv.Itoa(k)})
	if err != nil {
		return nil, fmt.Errorf("handover: open %d sessions: %w", n, err)
	}
	defer h.Close()
	// Every WebSocket has received before the first swap.
	if !waitUntilCtx(ctx, 3*cfg.Interval+30*time.Second, func() bool { return h.Received() >= int64(n) }) {
		return nil, fmt.Errorf("handover: %d sessions: traffic did not start: %v", n, h.Stats())
	}
	logPath := filepath.Join(dir, "tether.log")
	var rows []HandoverRow
	pid := p.pid()
	for swap := 1; swap <= cfg.Swaps; swap++ {
		seen := countLines(logPath, msgHandedOver)
		h.Mark()
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
			return rows, fmt.Errorf("handover: signal %d: %w", pid, err)
		}
		var line map[string]any
		if !waitUntilCtx(ctx, time.Minute, func() bool {
			line = nthLine(logPath, msgHandedOver, seen)
			return line != nil
		}) {
			return rows, fmt.Errorf("handover: %d sessions, swap %d: not done within a minute; log %s", n, swap, logPath)
		}
		took := time.Since(start)
		newPID := int(jsonNum(line, "new_pid"))
		if newPID <= 0 {
			return rows, fmt.Errorf("handover: no new_pid in %v", line)
		}
		pids = append(pids, newPID)
		// Two more messages each way after the swap, then read the pauses.
		after := h.Received()
		if !waitUntilCtx(ctx, 2*cfg.Interval+30*time.Second, func() bool { return h.Received() >= after+2*int64(n) }) {
			return rows, fmt.Errorf("handover: %d sessions, swap %d: traffic stopped: %v", n, swap, h.Stats())
		}
		row := HandoverRow{Sessions: n, Swap: swap, Took: took, Handed: jsonNum(line, "sessions_handed"), Stats: h.Stats()}
		if ms, ok := line["dur"].(float64); ok {
			row.Logged = time.Duration(ms * float64(time.Millisecond))
		}
		rows = append(rows, row)
		fmt.Fprintf(cfg.Out, "%d sessions, swap %d: took %v (logged %v), handed %d; %v\n", n, swap, took.Round(time.Millisecond), row.Logged.Round(time.Millisecond), row.Handed, row.Stats)
		if !row.Stats.Clean() {
			return rows, fmt.Errorf("handover: %d sessions, swap %d: %v: %v", n, swap, row.Stats, row.Stats.FirstErr)
		}
		pid = newPID
	}
	return rows, nil
}

// writeHandoverTable prints the rows as a Markdown table.
func writeHandoverTable(w io.Writer, rows []HandoverRow, iv time.Duration) {
	fmt.Fprintf(w, "\n| WebSockets | swap | hand-over (signal → done) | logged by the old process | handed | pause p50 | pause p99 | pause max | closed | lost |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(w, "| %d | %d | %v | %v | %d | %v | %v | %v | %d | %d |\n", r.Sessions, r.Swap,
			r.Took.Round(time.Millisecond), r.Logged.Round(time.Millisecond), r.Handed,
			r.Stats.PauseP50.Round(100*time.Microsecond), r.Stats.PauseP99.Round(100*time.Microsecond), r.Stats.PauseMax.Round(100*time.Microsecond),
			r.Stats.Closed, r.Stats.Gaps+r.Stats.Reordered)
	}
	fmt.Fprintf(w, "\nA message every %v per WebSocket; pause: per WebSocket, the largest delay of a message sent from the signal on.\n", iv)
}

// countLines is how many JSON log lines of path carry message msg.
func countLines(path, msg string) int {
	n := 0
	eachLine(path, msg, func(map[string]any) bool { n++; return true })
	return n
}

// nthLine returns the line after the first skip lines of path with message msg.
func nthLine(path, msg string, skip int) map[string]any {
	var out map[string]any
	eachLine(path, msg, func(m map[string]any) bool {
		if skip == 0 {
			out = m
			return false
		}
		skip--
		return true
	})
	return out
}

func eachLine(path, msg string, f func(map[string]any) bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), []byte(msg)) {
			continue
		}
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["message"] == msg && !f(m) {
			return
		}
	}
}

func jsonNum(m map[string]any, k string) int64 {
	f, _ := m[k].(float64)
	return int64(f)
}

// waitUntilCtx polls cond every 5 ms for at most d.
func waitUntilCtx(ctx context.Context, d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) && ctx.Err() == nil {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}
