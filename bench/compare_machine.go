package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Machine is what a comparison ran on.
type Machine struct {
	CPUs     int    // processors of /proc/cpuinfo
	CPUModel string // its first "model name"
	Kernel   string // /proc/sys/kernel/osrelease
	// Versions, each as its program prints it; "not found" when missing.
	Nginx, HAProxy, Go, Tether string
	// Wrk and CC are the outside generators' tools (wrk, the C compiler
	// of wsgen); "not found" when missing.
	Wrk, CC string
	// LoadStart and LoadEnd are the 1-minute load averages before the
	// first run and after the last: other work on the machine shows there.
	LoadStart, LoadEnd string
}

// loadAverage is the 1-minute load average of /proc/loadavg; "?" if unknown.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// versionTimeout bounds each version command.
const versionTimeout = 5 * time.Second

// readMachine describes this machine and the peers' versions.
func readMachine(ctx context.Context, e *peerEnv) Machine {
	var m Machine
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(info), "\n") {
			k, v, ok := strings.Cut(line, ":")
			switch k = strings.TrimSpace(k); {
			case !ok:
			case k == "processor":
				m.CPUs++
			case k == "model name" && m.CPUModel == "":
				m.CPUModel = strings.TrimSpace(v)
			}
		}
	}
	if m.CPUModel == "" {
		m.CPUModel = runtime.GOARCH
	}
	if k, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(k))
	}
	m.Nginx = firstLine(ctx, orName(e.nginxBin, "nginx"), "-v")
	m.HAProxy = firstLine(ctx, orName(e.haproxyBin, "haproxy"), "-v")
	if m.Go = firstLine(ctx, "go", "version"); m.Go == "not found" {
		m.Go = "go version " + runtime.Version() + " (tether-bench's)"
	}
	m.Tether = firstLine(ctx, "git", "describe", "--always", "--dirty")
	m.Wrk, _, _ = strings.Cut(versionLine(ctx, "wrk", "--version"), " Copyright")
	m.CC = firstLine(ctx, "cc", "--version")
	m.LoadStart = loadAverage()
	return m
}

func orName(path, name string) string {
	if path == "" {
		return name
	}
	return path
}

// firstLine runs name args and returns the first line it printed on
// stdout or stderr (nginx -v prints on stderr); "not found" if it fails.
func firstLine(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return "not found"
	}
	line, _, _ := bytes.Cut(bytes.TrimSpace(out), []byte("\n"))
	return string(line)
}

// versionLine is the first line name args printed, whatever its exit
// status (wrk --version exits 1); "not found" if it printed nothing.
func versionLine(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	out, _ := exec.CommandContext(ctx, name, args...).CombinedOutput()
	line, _, _ := bytes.Cut(bytes.TrimSpace(out), []byte("\n"))
	if len(line) == 0 {
		return "not found"
	}
	return string(line)
}
