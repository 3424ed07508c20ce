package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// ProcStat is one reading of a process's resources from /proc (Linux).
type ProcStat struct {
	RSSKiB  int64 // VmRSS of /proc/PID/status
	FDs     int   // entries of /proc/PID/fd
	Threads int   // Threads of /proc/PID/status
	// FDLimit is the soft limit on open files of /proc/PID/limits; 0 when
	// unlimited or unknown.
	FDLimit int64
}

// ReadProcStat reads the resources of process pid. The caller must be
// allowed to list /proc/PID/fd (same user, or root).
func ReadProcStat(pid int) (ProcStat, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	var st ProcStat
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return st, fmt.Errorf("read process %d: %w", pid, err)
	}
	rss, okRSS := statusField(status, "VmRSS:")
	threads, okThreads := statusField(status, "Threads:")
	if !okRSS || !okThreads {
		return st, fmt.Errorf("read process %d: no VmRSS or Threads in %s/status", pid, dir)
	}
	st.RSSKiB, st.Threads = rss, int(threads)
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return st, fmt.Errorf("read process %d: %w", pid, err)
	}
	st.FDs = len(fds)
	if limits, err := os.ReadFile(dir + "/limits"); err == nil {
		st.FDLimit = openFilesLimit(limits)
	}
	return st, nil
}

// statusField returns the first number after key in a /proc/PID/status
// text ("VmRSS:     1234 kB" gives 1234).
func statusField(status []byte, key string) (int64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte(key)) {
			continue
		}
		f := bytes.Fields(line[len(key):])
		if len(f) == 0 {
			return 0, false
		}
		v, err := strconv.ParseInt(string(f[0]), 10, 64)
		return v, err == nil
	}
	return 0, false
}

// openFilesLimit returns the soft limit of the "Max open files" line of a
// /proc/PID/limits text; 0 when unlimited or absent.
func openFilesLimit(limits []byte) int64 {
	const key = "Max open files"
	for line := range bytes.SplitSeq(limits, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte(key)) {
			continue
		}
		f := bytes.Fields(line[len(key):])
		if len(f) == 0 {
			return 0
		}
		v, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0 // "unlimited"
		}
		return v
	}
	return 0
}

// RaiseFileLimit raises this process's soft limit on open files to its
// hard limit and returns the limit now in force. Go's runtime already
// raises it to one below the hard limit at start on Linux; processes that
// are not Go programs get what their parent gave them.
func RaiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			return uint64(lim.Cur), fmt.Errorf("setrlimit %d: %w", want.Cur, err)
		}
		lim = want
	}
	return uint64(lim.Cur), nil
}

// fileLimit is this process's soft limit on open files; 0 if unknown.
func fileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return uint64(lim.Cur)
}

// ephemeralPorts is the number of local ports the kernel hands out to
// outgoing connections from one source address; 0 if unknown.
func ephemeralPorts() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) != 2 {
		return 0
	}
	lo, err1 := strconv.Atoi(string(f[0]))
	hi, err2 := strconv.Atoi(string(f[1]))
	if err1 != nil || err2 != nil || hi < lo {
		return 0
	}
	return hi - lo + 1
}
