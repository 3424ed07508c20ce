package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// Peers of a comparison: the load balancers in tether's seat, and the node
// itself with nothing in front of it.
const (
	PeerTether  = "tether"
	PeerNginx   = "nginx"
	PeerHAProxy = "haproxy"
	PeerDirect  = "direct"
	// PeerTetherGo is tether with its splice loops off (--splice-loops -1):
	// every WebSocket session on two goroutines, the engine TLS sessions
	// use, beside the loops.
	PeerTetherGo = "tether-goroutines"
	// PeerTetherConnGo is tether with its http loops off (--http-loops -1):
	// every keep-alive client connection waits on its own goroutine instead
	// of on the epoll loops of the default.
	PeerTetherConnGo = "tether-conn-goroutines"
)

// Bounds of the processes a comparison starts.
const (
	// peerStartTimeout bounds the wait for a started process to answer.
	peerStartTimeout = 10 * time.Second
	// peerStopTimeout bounds the wait for a process after SIGTERM; SIGKILL
	// follows.
	peerStopTimeout = 5 * time.Second
	// peerPoll is the pause between two checks of a starting process.
	peerPoll = 50 * time.Millisecond
	// peerFileLimit is what nginx and HAProxy may open: the machine's hard
	// limit per process.
	peerFileLimit = 20_000
)

// Names of the configuration templates in CompareConfig.Templates.
const (
	nginxTemplate   = "nginx.conf.tmpl"
	haproxyTemplate = "haproxy.cfg.tmpl"
)

// nodeNameRE is what a node name may hold to be written into nginx and
// HAProxy configurations as is.
var nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// PeerNode is a node as the peers' configurations name it.
type PeerNode struct {
	Name string // e.g. CB_Server_1: the cookie value that routes to it
	Addr string // host:port on loopback
}

// peerConfig is the data of the configuration templates: one proxy on
// Listen in front of Nodes.
type peerConfig struct {
	Listen       string     // host:port on loopback
	Nodes        []PeerNode // at least one
	Cookie       string     // stickiness cookie name
	HealthPath   string     // e.g. /cobrowse/health
	Workers      int        // nginx worker processes, HAProxy threads, tether's processors (GOMAXPROCS when fewer than its CPUs)
	Dir          string     // the process's own directory: pid file, logs, temp files
	FileLimit    int        // descriptors the proxy may open
	WorkerConns  int        // nginx worker_connections: client and node sockets of one worker
	MaxConns     int        // HAProxy maxconn: client connections
	UpstreamIdle int        // idle keep-alive connections kept per node
	TLS          *peerTLS   // a TLS listener too; nil for none
}

// peerTLS is the TLS listener of a peer: its address and certificate.
type peerTLS struct {
	Listen string // host:port on loopback
	certPair
}

// newPeerConfig fills in the limits that follow from the others.
func newPeerConfig(listen string, nodes []PeerNode, cookie string, workers int, dir string) peerConfig {
	return peerConfig{
		Listen:       listen,
		Nodes:        nodes,
		Cookie:       cookie,
		HealthPath:   PathHealth,
		Workers:      workers,
		Dir:          dir,
		FileLimit:    peerFileLimit,
		WorkerConns:  peerFileLimit - 200,       // a session takes two: client and node; a margin for files and listeners
		MaxConns:     (peerFileLimit - 200) / 2, // two sockets a connection, and a margin
		UpstreamIdle: 128,                       // tether's --pool-max-idle
	}
}

// check refuses values that would not be written into a configuration as
// they are.
func (c peerConfig) check() error {
	if len(c.Nodes) == 0 {
		return errors.New("no nodes")
	}
	for _, n := range c.Nodes {
		if !nodeNameRE.MatchString(n.Name) {
			return fmt.Errorf("node name %q: want letters, digits, _ . -", n.Name)
		}
		if err := CheckLoopback(n.Addr); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	if !nodeNameRE.MatchString(c.Cookie) {
		return fmt.Errorf("cookie name %q: want letters, digits, _ . -", c.Cookie)
	}
	if err := CheckLoopback(c.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if c.Workers < 1 {
		return fmt.Errorf("workers %d: want at least 1", c.Workers)
	}
	if c.TLS != nil {
		if err := CheckLoopback(c.TLS.Listen); err != nil {
			return fmt.Errorf("tls listen: %w", err)
		}
		for _, f := range []string{c.TLS.Cert, c.TLS.Key, c.TLS.PEM} {
			if !filepath.IsAbs(f) || strings.ContainsAny(f, " \t\n;{}\"'#") {
				return fmt.Errorf("certificate file %q: want an absolute path without spaces or quotes", f)
			}
		}
	}
	return nil
}

// renderPeerConfig renders the template file name of dir with c.
func renderPeerConfig(dir, name string, c peerConfig) ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	t, err := template.New(name).Option("missingkey=error").
		Funcs(template.FuncMap{"regexQuote": regexp.QuoteMeta}).Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("parse template %s: %w", path, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, c); err != nil {
		return nil, fmt.Errorf("render template %s: %w", path, err)
	}
	return b.Bytes(), nil
}

// proc is a process the comparison started: a node or a peer. It is
// stopped by its own PID and nothing else.
type proc struct {
	name   string
	cmd    *exec.Cmd
	logDir string
	exited chan struct{} // closed by waitLoop when the process has exited
	err    error         // the process's exit; read after exited is closed
}

// startProc starts argv (after the taskset prefix of cpus, "" for none) with
// its stdout and stderr in files of logDir, and env added to this process's.
func startProc(name, logDir, cpus string, env []string, argv ...string) (*proc, error) {
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	out, err := os.Create(filepath.Join(logDir, name+".out"))
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer out.Close()
	errf, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer errf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, errf
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = logDir
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logDir: logDir, exited: make(chan struct{})}
	go p.waitLoop()
	return p, nil
}

// waitLoop reaps the process; it is the only caller of cmd.Wait.
func (p *proc) waitLoop() {
	p.err = p.cmd.Wait()
	close(p.exited)
}

// pid is the process id; taskset execs the command, so it is the command's.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, waits at most peerStopTimeout, then sends SIGKILL and
// waits again as long.
func (p *proc) stop() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(peerStopTimeout)
	defer t.Stop()
	select {
	case <-p.exited:
		return
	case <-t.C:
	}
	_ = p.cmd.Process.Kill()
	t.Reset(peerStopTimeout)
	select {
	case <-p.exited:
	case <-t.C:
	}
}

// failure describes a process that did not come up, with its log's tail.
func (p *proc) failure(what string) error {
	state := "running"
	if !p.running() {
		state = fmt.Sprintf("exited (%v)", p.err)
	}
	tail, _ := os.ReadFile(filepath.Join(p.logDir, p.name+".log"))
	if len(tail) > 800 {
		tail = tail[len(tail)-800:]
	}
	return fmt.Errorf("%s %s, %s; log %s: %s", p.name, what, state,
		filepath.Join(p.logDir, p.name+".log"), strings.TrimSpace(string(tail)))
}

// startNodeProc starts `bench node --name name` on a port it picks itself and
// returns it with its address, read from its log.
func startNodeProc(bin, name, logDir, cpus string, env []string) (*proc, string, error) {
	p, err := startProc(name, logDir, cpus, env, bin, "node", "--name", name,
		"--listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "info")
	if err != nil {
		return nil, "", err
	}
	addrRE := regexp.MustCompile(`"addr":"(127\.0\.0\.1:[0-9]+)"`)
	for deadline := time.Now().Add(peerStartTimeout); time.Now().Before(deadline) && p.running(); {
		log, _ := os.ReadFile(filepath.Join(logDir, name+".log"))
		if m := addrRE.FindSubmatch(log); m != nil {
			return p, string(m[1]), nil
		}
		time.Sleep(peerPoll)
	}
	p.stop()
	return nil, "", p.failure("did not report its address")
}

// freePort returns a loopback address whose port was free a moment ago,
// for a process that takes its port from its configuration.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a port: %w", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr, nil
}

// waitReady waits until GET / through addr is answered by a node (X-Node),
// or the process exits, or peerStartTimeout.
func waitReady(ctx context.Context, p *proc, addr string) error {
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	for deadline := time.Now().Add(peerStartTimeout); time.Now().Before(deadline) && p.running(); {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		resp, err := client.Get("http://" + addr + "/")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get(HeaderNode) != "" {
				return nil
			}
		}
		time.Sleep(peerPoll)
	}
	return p.failure("did not answer on " + addr)
}

// childPIDs returns the processes whose parent is pid, from /proc.
func childPIDs(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The fields after the command name, which is in parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// cpuTicks is the user and system time of pid in clock ticks, from
// /proc/PID/stat; 0 if it cannot be read.
func cpuTicks(pid int) int64 {
	user, sys := cpuTicksSplit(pid)
	return user + sys
}

// cpuTicksSplit is the user and system CPU time of process pid so far, in
// clock ticks (utime and stime of /proc/PID/stat); 0, 0 if unreadable.
func cpuTicksSplit(pid int) (user, sys int64) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	user, sys, _ = parseCPUTicks(stat)
	return user, sys
}

// parseCPUTicks reads utime and stime from a /proc/PID/stat text. The
// command name, in parentheses, may hold spaces and parentheses itself:
// the fields are counted from the last ")".
func parseCPUTicks(stat []byte) (user, sys int64, ok bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, false
	}
	// After ")": state(0) ppid(1) ... utime(11) stime(12).
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return u, s, true
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat times; it
// is 100 on every Linux architecture Go runs on.
const clockTicks = 100
