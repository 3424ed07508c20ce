package bench

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkCookieScript is wrk's Lua script that gives each wrk thread a Cookie
// header of its own, from the script's arguments in turn.
//
//go:embed wrk_cookies.lua
var wrkCookieScript []byte

// wrkThreads is wrk's -t: two threads, at most one per connection.
const wrkThreads = 2

// WrkResult is what wrk printed of one run with --latency.
type WrkResult struct {
	Requests  int64         // "N requests in 2.01s"
	Elapsed   time.Duration // the time of that line
	PerSecond float64       // "Requests/sec:"
	// P50, P75, P90 and P99 are the "Latency Distribution" of --latency.
	P50, P75, P90, P99 time.Duration
	// Non2xx counts the answers whose status was neither 2xx nor 3xx.
	Non2xx int64
	// Connect, Read, Write and Timeout are the "Socket errors" line.
	Connect, Read, Write, Timeout int64
	// CPU is wrk's user and system time, from its exit status (not
	// printed by wrk; 0 from ParseWrk).
	CPU time.Duration
}

// Errors is the sum of the answers that were not 2xx or 3xx and the
// socket errors.
func (r WrkResult) Errors() int64 {
	return r.Non2xx + r.Connect + r.Read + r.Write + r.Timeout
}

var (
	wrkRequestsRE = regexp.MustCompile(`^(\d+) requests in ([0-9.]+[a-z]+),`)
	wrkRateRE     = regexp.MustCompile(`^Requests/sec:\s+([0-9.]+)$`)
	wrkPercentRE  = regexp.MustCompile(`^(50|75|90|99)%\s+([0-9.]+[a-z]+)$`)
	wrkNon2xxRE   = regexp.MustCompile(`^Non-2xx or 3xx responses: (\d+)$`)
	wrkSocketRE   = regexp.MustCompile(`^Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)$`)
	wrkTimeRE     = regexp.MustCompile(`^([0-9.]+)(us|ms|s|m|h)$`)
)

// parseWrkTime reads a time as wrk prints it: "170.00us", "1.49ms",
// "2.01s", "1.05m".
func parseWrkTime(s string) (time.Duration, error) {
	m := wrkTimeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("wrk time %q", s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("wrk time %q: %w", s, err)
	}
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}[m[2]]
	return time.Duration(v * float64(unit)), nil
}

// ParseWrk reads the report wrk printed on stdout. It wants the requests
// line and Requests/sec, and the latency distribution when any request
// completed.
func ParseWrk(out []byte) (WrkResult, error) {
	var r WrkResult
	var haveCount, haveRate, haveP50 bool
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		var err error
		if m := wrkRequestsRE.FindStringSubmatch(line); m != nil {
			r.Requests, err = strconv.ParseInt(m[1], 10, 64)
			if err == nil {
				r.Elapsed, err = parseWrkTime(m[2])
			}
			haveCount = err == nil
		} else if m := wrkRateRE.FindStringSubmatch(line); m != nil {
			r.PerSecond, err = strconv.ParseFloat(m[1], 64)
			haveRate = err == nil
		} else if m := wrkPercentRE.FindStringSubmatch(line); m != nil {
			p := map[string]*time.Duration{"50": &r.P50, "75": &r.P75, "90": &r.P90, "99": &r.P99}[m[1]]
			*p, err = parseWrkTime(m[2])
			haveP50 = haveP50 || (err == nil && m[1] == "50")
		} else if m := wrkNon2xxRE.FindStringSubmatch(line); m != nil {
			r.Non2xx, err = strconv.ParseInt(m[1], 10, 64)
		} else if m := wrkSocketRE.FindStringSubmatch(line); m != nil {
			for i, p := range []*int64{&r.Connect, &r.Read, &r.Write, &r.Timeout} {
				if *p, err = strconv.ParseInt(m[i+1], 10, 64); err != nil {
					break
				}
			}
		}
		if err != nil {
			return r, fmt.Errorf("parse wrk output: %w", err)
		}
	}
	switch {
	case !haveCount || !haveRate:
		return r, fmt.Errorf("parse wrk output: no requests line or Requests/sec in %q", firstBytes(out, 200))
	case r.Requests > 0 && !haveP50:
		return r, errors.New("parse wrk output: no latency distribution (run wrk with --latency)")
	}
	return r, nil
}

// firstBytes is the start of b, for error messages.
func firstBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// wrkRun is one run of wrk: GET /cobrowse/resource?bytes=Bytes on Conns
// keep-alive connections, each wrk thread with its cookie.
type wrkRun struct {
	Bin      string // wrk's path
	Script   string // wrk_cookies.lua's path
	Addr     string // host:port on loopback
	Conns    int    // connections, at least 1
	Duration time.Duration
	Bytes    int      // body size of each GET
	Cookies  []string // "name=value": thread N sends the N-th in turn; none for no cookie
	CPUs     string   // taskset list; "" for none
}

// args is wrk's command line, without taskset.
func (w wrkRun) args() []string {
	// wrk takes whole seconds.
	secs := max(1, int((w.Duration+time.Second-1)/time.Second))
	argv := []string{w.Bin, "-t" + strconv.Itoa(min(wrkThreads, w.Conns)), "-c" + strconv.Itoa(w.Conns),
		"-d" + strconv.Itoa(secs) + "s", "--latency", "-s", w.Script,
		"http://" + w.Addr + PathResource + "?bytes=" + strconv.Itoa(w.Bytes)}
	if len(w.Cookies) > 0 {
		argv = append(append(argv, "--"), w.Cookies...)
	}
	return argv
}

// genGrace is how long an outside generator may run past its duration
// before it is killed.
const genGrace = 30 * time.Second

// run runs wrk and parses its report.
func (w wrkRun) run(ctx context.Context) (WrkResult, error) {
	if err := CheckLoopback(w.Addr); err != nil {
		return WrkResult{}, fmt.Errorf("wrk: %w", err)
	}
	out, cpu, err := runGenerator(ctx, w.CPUs, w.Duration, w.args())
	if err != nil {
		return WrkResult{}, fmt.Errorf("wrk: %w", err)
	}
	r, err := ParseWrk(out)
	r.CPU = cpu
	return r, err
}

// runGenerator runs argv (after the taskset prefix of cpus) for at most
// d+genGrace and returns its stdout and its user and system time; its
// stderr is in the error.
func runGenerator(ctx context.Context, cpus string, d time.Duration, argv []string) ([]byte, time.Duration, error) {
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	ctx, cancel := context.WithTimeout(ctx, d+genGrace)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var cpu time.Duration
	if st := cmd.ProcessState; st != nil {
		cpu = st.UserTime() + st.SystemTime()
	}
	if err != nil {
		return stdout.Bytes(), cpu, fmt.Errorf("%s: %w: %s", filepath.Base(argv[0]), err, strings.TrimSpace(firstBytes(stderr.Bytes(), 400)))
	}
	return stdout.Bytes(), cpu, nil
}

// writeWrkScript writes the cookie script into dir and returns its path.
func writeWrkScript(dir string) (string, error) {
	path := filepath.Join(dir, "wrk_cookies.lua")
	if err := os.WriteFile(path, wrkCookieScript, 0o644); err != nil {
		return "", fmt.Errorf("write wrk script: %w", err)
	}
	return path, nil
}
