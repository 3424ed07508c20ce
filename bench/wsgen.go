package bench

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wsgenSource is the C source of wsgen, the WebSocket echo load generator
// compiled at run time (BuildWSGen).
//
//go:embed wsgen/wsgen.c
var wsgenSource []byte

// ErrNoCC is returned by BuildWSGen when no C compiler is in PATH.
var ErrNoCC = errors.New("bench: no C compiler (cc) in PATH to build wsgen: apt-get install -y gcc")

// wsgen's bounds (MAX_SESSIONS and MAX_MSG_BYTES of wsgen.c).
const (
	wsgenMaxSessions     = 10_000
	wsgenMaxMessageBytes = 1 << 20
)

// wsgenBuildTimeout bounds the compilation of wsgen.
const wsgenBuildTimeout = time.Minute

// BuildWSGen compiles wsgen with `cc -O2` into dir and returns the path of
// the binary; ErrNoCC when cc is missing.
func BuildWSGen(ctx context.Context, dir string) (string, error) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		return "", ErrNoCC
	}
	src := filepath.Join(dir, "wsgen.c")
	if err := os.WriteFile(src, wsgenSource, 0o644); err != nil {
		return "", fmt.Errorf("build wsgen: %w", err)
	}
	bin := filepath.Join(dir, "wsgen")
	ctx, cancel := context.WithTimeout(ctx, wsgenBuildTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, cc, "-O2", "-o", bin, src).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build wsgen: %s: %w: %s", cc, err, strings.TrimSpace(firstBytes(out, 800)))
	}
	return bin, nil
}

// WSGenResult is wsgen's one line of results.
type WSGenResult struct {
	Sessions  int
	MsgBytes  int
	Elapsed   time.Duration
	Connected int64 // upgrades that succeeded, reconnections included
	Messages  int64 // echoes received and checked within the run
	PerSecond float64
	// P50, P90, P99 and Max are the round trips' latency (the percentiles
	// within about 6%: a log-linear histogram).
	P50, P90, P99, Max time.Duration
	UpgradeErrors      int64 // answers other than 101, or a closed connection before one
	IOErrors           int64 // refused connections, resets, Close frames from the server
	BadFrames          int64 // echoes that were not the message sent
	Timeouts           int64 // sessions with no answer in time
	Reconnects         int64 // sessions opened anew after a failure
	// CPU is wsgen's user and system time, from its exit status (not
	// printed by wsgen; 0 from ParseWSGen).
	CPU time.Duration
}

// Errors is the sum of the failures.
func (r WSGenResult) Errors() int64 {
	return r.UpgradeErrors + r.IOErrors + r.BadFrames + r.Timeouts
}

// ParseWSGen reads wsgen's output: the line that starts with "wsgen ",
// key=value pairs of which every field of WSGenResult is required.
func ParseWSGen(out []byte) (WSGenResult, error) {
	var r WSGenResult
	var line string
	for l := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(l, "wsgen ") {
			line = l
		}
	}
	if line == "" {
		return r, fmt.Errorf("parse wsgen output: no result line in %q", firstBytes(out, 200))
	}
	kv := map[string]string{}
	for _, f := range strings.Fields(line)[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return r, fmt.Errorf("parse wsgen output: field %q", f)
		}
		kv[k] = v
	}
	var err error
	num := func(k string) int64 {
		v, e := strconv.ParseInt(kv[k], 10, 64)
		if e != nil && err == nil {
			err = fmt.Errorf("parse wsgen output: %s=%q", k, kv[k])
		}
		return v
	}
	float := func(k string) float64 {
		v, e := strconv.ParseFloat(kv[k], 64)
		if e != nil && err == nil {
			err = fmt.Errorf("parse wsgen output: %s=%q", k, kv[k])
		}
		return v
	}
	us := func(k string) time.Duration { return time.Duration(num(k)) * time.Microsecond }
	r = WSGenResult{
		Sessions:      int(num("sessions")),
		MsgBytes:      int(num("msg_bytes")),
		Elapsed:       time.Duration(float("elapsed_s") * float64(time.Second)),
		Connected:     num("connected"),
		Messages:      num("messages"),
		PerSecond:     float("rate"),
		P50:           us("p50_us"),
		P90:           us("p90_us"),
		P99:           us("p99_us"),
		Max:           us("max_us"),
		UpgradeErrors: num("upgrade_errors"),
		IOErrors:      num("io_errors"),
		BadFrames:     num("bad_frames"),
		Timeouts:      num("timeouts"),
		Reconnects:    num("reconnects"),
	}
	return r, err
}

// wsgenRun is one run of wsgen: Sessions echo WebSockets, each keeping a
// message of MsgBytes in flight.
type wsgenRun struct {
	Bin      string // wsgen's path (BuildWSGen)
	Addr     string // host:port on loopback
	Sessions int
	MsgBytes int
	Duration time.Duration
	Cookies  []string // "name=value": session N sends the N-th in turn; none for no cookie
	CPUs     string   // taskset list; "" for none
}

// args is wsgen's command line, without taskset.
func (w wsgenRun) args() []string {
	argv := []string{w.Bin, "-a", w.Addr, "-s", strconv.Itoa(w.Sessions), "-m", strconv.Itoa(w.MsgBytes),
		"-d", strconv.FormatFloat(w.Duration.Seconds(), 'f', 3, 64)}
	for _, c := range w.Cookies {
		argv = append(argv, "-k", c)
	}
	return argv
}

// run runs wsgen and parses its line.
func (w wsgenRun) run(ctx context.Context) (WSGenResult, error) {
	if err := CheckLoopback(w.Addr); err != nil {
		return WSGenResult{}, fmt.Errorf("wsgen: %w", err)
	}
	out, cpu, err := runGenerator(ctx, w.CPUs, w.Duration, w.args())
	if err != nil {
		return WSGenResult{}, fmt.Errorf("wsgen: %w", err)
	}
	r, err := ParseWSGen(bytes.TrimSpace(out))
	r.CPU = cpu
	return r, err
}
