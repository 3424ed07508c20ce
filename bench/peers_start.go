package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// peerEnv is what starting any peer needs: binaries, templates, the nodes
// and where processes run.
type peerEnv struct {
	tetherBin, nginxBin, haproxyBin, benchBin string
	templates                                 string
	tetherArgs                                []string // added to tether's command line
	nodes                                     []PeerNode
	nodePIDs                                  []int // the nodes' processes, for the benchmark's own CPU time
	cookie                                    string
	proxyCPUs                                 string               // taskset list of the peer under test; "" for none
	cpus                                      int                  // CPUs the peer under test may use
	certs                                     map[string]*certPair // by TLS scenario
	// Outside load generators (GeneratorWrk): wrk, its cookie script and
	// wsgen's binary; "" when not needed.
	wrkBin, wrkScript, wsgenBin string
	loadCPUs                    string // taskset list of the load generators; "" for none
	// perfErr says why system calls are not counted (syscallCounter); nil
	// when they are.
	perfErr error
}

// peerRun is one started peer: where the load goes and which processes
// are the peer's, for its CPU time and memory.
type peerRun struct {
	peer     string
	addr     string // host:port the load targets
	tlsAddr  string // host:port of its TLS listener; "" for none
	proc     *proc  // the process started: tether, nginx's master, HAProxy, a node
	measured []int  // processes whose CPU and memory are the peer's
	pprof    string // base URL of its admin listener with Go's profiler; "" for none
}

// startPeer starts peer with workers workers in dir (its own directory:
// configuration, pid file, logs) and waits until it answers. With cert it
// also terminates TLS with it on a second listener.
func startPeer(ctx context.Context, e *peerEnv, peer string, workers int, dir string, cert *certPair) (*peerRun, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start %s: %w", peer, err)
	}
	// nginx's workers run as an unprivileged user when started by root.
	_ = os.Chmod(dir, 0o755)
	goEnv := []string{"GOMAXPROCS=" + strconv.Itoa(workers)}
	if peer == PeerDirect {
		p, addr, err := startNodeProc(e.benchBin, e.nodes[0].Name, dir, e.proxyCPUs, goEnv)
		if err != nil {
			return nil, err
		}
		return readyPeer(ctx, &peerRun{peer: peer, addr: addr, proc: p, measured: []int{p.pid()}})
	}

	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	pc := newPeerConfig(addr, e.nodes, e.cookie, workers, dir)
	if cert != nil {
		tlsAddr, err := freePort()
		if err != nil {
			return nil, err
		}
		pc.TLS = &peerTLS{Listen: tlsAddr, certPair: *cert}
	}
	var argv, env []string
	switch peer {
	case PeerTether, PeerTetherGo, PeerTetherConnGo:
		argv = []string{e.tetherBin, "--listen", addr, "--access-log=false", "--admin", "", "--log-level", "warn"}
		switch peer {
		case PeerTetherGo:
			argv = append(argv, "--splice-loops", "-1")
		case PeerTetherConnGo:
			argv = append(argv, "--http-loops", "-1")
		}
		if pc.TLS != nil {
			argv = append(argv, "--tls-listen", pc.TLS.Listen, "--cert", cert.Cert, "--key", cert.Key)
		}
		for _, n := range e.nodes {
			argv = append(argv, "--node", n.Name+"=http://"+n.Addr)
		}
		if e.cookie != DefaultCookie {
			argv = append(argv, "--sticky-cookie", e.cookie)
		}
		argv = append(argv, e.tetherArgs...)
		env = tetherEnv(workers, e.cpus)
	case PeerNginx, PeerHAProxy:
		conf, err := writePeerConfig(e, peer, pc)
		if err != nil {
			return nil, err
		}
		if peer == PeerNginx {
			argv = []string{e.nginxBin, "-p", dir + "/", "-c", conf, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;"}
		} else {
			argv = []string{e.haproxyBin, "-f", conf, "-db"}
		}
	default:
		return nil, fmt.Errorf("unknown peer %q", peer)
	}
	p, err := startProc(peer, dir, e.proxyCPUs, env, argv...)
	if err != nil {
		return nil, err
	}
	r := &peerRun{peer: peer, addr: addr, proc: p, measured: []int{p.pid()}}
	if pc.TLS != nil {
		r.tlsAddr = pc.TLS.Listen
	}
	if peer == PeerNginx {
		// The master only supervises: the workers carry the load.
		workersUp := false
		for deadline := time.Now().Add(peerStartTimeout); time.Now().Before(deadline) && p.running(); time.Sleep(peerPoll) {
			if kids := childPIDs(p.pid()); len(kids) >= workers {
				r.measured, workersUp = kids, true
				break
			}
		}
		if !workersUp {
			p.stop()
			return nil, p.failure(fmt.Sprintf("did not start %d workers", workers))
		}
	}
	return readyPeer(ctx, r)
}

// readyPeer waits until r answers, and stops it if it does not.
func readyPeer(ctx context.Context, r *peerRun) (*peerRun, error) {
	if err := waitReady(ctx, r.proc, r.addr); err != nil {
		r.stop()
		return nil, err
	}
	return r, nil
}

// stop stops the peer's process by its PID. nginx's master stops its
// workers; a worker left behind by a master that had to be killed is
// stopped by its own PID.
func (r *peerRun) stop() {
	r.proc.stop()
	if r.peer != PeerNginx {
		return
	}
	for _, pid := range r.measured {
		cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil || !bytes.HasPrefix(cmdline, []byte("nginx: worker")) {
			continue // gone, as it should be
		}
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
}

// writePeerConfig renders peer's template into c.Dir and returns its path.
func writePeerConfig(e *peerEnv, peer string, c peerConfig) (string, error) {
	tmpl, name := nginxTemplate, "nginx.conf"
	if peer == PeerHAProxy {
		tmpl, name = haproxyTemplate, "haproxy.cfg"
	}
	conf, err := renderPeerConfig(e.templates, tmpl, c)
	if err != nil {
		return "", fmt.Errorf("%s configuration: %w", peer, err)
	}
	path := filepath.Join(c.Dir, name)
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		return "", fmt.Errorf("%s configuration: %w", peer, err)
	}
	return path, nil
}

// pids are the peer's processes: the one started and the measured ones
// (nginx: its master and its workers).
func (r *peerRun) pids() []int {
	out := []int{r.proc.pid()}
	for _, pid := range r.measured {
		if pid != r.proc.pid() {
			out = append(out, pid)
		}
	}
	return out
}

// cpuSeconds is the CPU time of the peer's measured processes so far, and
// the part of it spent in the kernel (system time).
func (r *peerRun) cpuSeconds() (total, sys float64) {
	var user, kernel int64
	for _, pid := range r.measured {
		u, s := cpuTicksSplit(pid)
		user += u
		kernel += s
	}
	return float64(user+kernel) / clockTicks, float64(kernel) / clockTicks
}

// tetherEnv is tether's environment for workers workers on cpus CPUs: as it
// ships (--procs auto, over all of them) when it has them all, else
// GOMAXPROCS fixing the count (pinned to one CPU, the idle scenarios).
func tetherEnv(workers, cpus int) []string {
	if workers == cpus {
		return nil
	}
	return []string{"GOMAXPROCS=" + strconv.Itoa(workers)}
}
