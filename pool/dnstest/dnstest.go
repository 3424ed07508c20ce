// Package dnstest runs a real DNS server, dnsmasq, on a loopback port for
// tests of node discovery: SRV and A records from a generated
// configuration, replaced by restarting the server on the same port.
// Tests skip, saying so, where dnsmasq is not installed (.ci/run installs
// it).
package dnstest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Binary is where dnsmasq is looked for first; then $PATH.
const Binary = "/usr/sbin/dnsmasq"

// Records are the records a Server answers. Names are best kept under
// .test: the server answers NXDOMAIN for one it has no record of, and
// REFUSED for any other name.
type Records struct {
	// SRV are srv-host lines: "_http._tcp.cobrowse.test,cobrowse-0.cobrowse.test,8080".
	SRV []string
	// Hosts are host-record lines: "cobrowse-0.cobrowse.test,127.0.0.1".
	Hosts []string
	// TTL is the TTL of every answer, in seconds (--local-ttl and
	// --auth-ttl). Zero means 0.
	TTL int
}

// Server is one dnsmasq process on 127.0.0.1, restarted on the same port
// by Set.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// Start starts dnsmasq answering recs on a free loopback port; it is
// stopped when the test ends. The test is skipped if dnsmasq is missing.
func Start(t testing.TB, recs Records) *Server {
	t.Helper()
	bin := Binary
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("dnsmasq"); err != nil {
			t.Skip("dnsmasq is not installed (apt-get install dnsmasq): DNS discovery tests need a real DNS server")
		}
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	s.port = freePort(t)
	s.start(recs)
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's "127.0.0.1:PORT".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Set replaces the records: dnsmasq is stopped and started again on the
// same port with the new configuration.
func (s *Server) Set(recs Records) {
	s.t.Helper()
	s.Stop()
	s.start(recs)
}

// Stop stops dnsmasq (SIGTERM to its PID) and waits for it; queries then
// get no answer. Set starts it again.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
	s.log.Close()
}

// Queries returns how many queries for name (any type) dnsmasq logged
// since it last started (--log-queries).
func (s *Server) Queries(name string) int {
	b, err := os.ReadFile(filepath.Join(s.dir, "dnsmasq.log"))
	if err != nil {
		return 0
	}
	n := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, "query[") && strings.Contains(line, " "+strings.TrimSuffix(name, ".")+" from") {
			n++
		}
	}
	return n
}

func (s *Server) start(recs Records) {
	s.t.Helper()
	var conf strings.Builder
	for _, r := range recs.SRV {
		fmt.Fprintf(&conf, "srv-host=%s\n", r)
	}
	for _, r := range recs.Hosts {
		fmt.Fprintf(&conf, "host-record=%s\n", r)
	}
	confPath := filepath.Join(s.dir, "dnsmasq.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		s.t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(s.dir, "dnsmasq.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	args := []string{
		"--keep-in-foreground", "--port=" + strconv.Itoa(s.port),
		"--listen-address=127.0.0.1", "--bind-interfaces",
		"--no-resolv", "--no-hosts", "--no-poll", "--cache-size=0",
		"--local=/test/", // names under .test without a record: NXDOMAIN, not REFUSED
		"--conf-file=" + confPath, "--pid-file=" + filepath.Join(s.dir, "dnsmasq.pid"),
		"--local-ttl=" + strconv.Itoa(recs.TTL), "--auth-ttl=" + strconv.Itoa(recs.TTL),
		"--log-queries", "--log-facility=-",
	}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	// Bound the attempts: the port chosen may be taken between its
	// release and dnsmasq's bind, and a restart may find the old socket
	// still closing.
	for attempt := 0; ; attempt++ {
		cmd := exec.Command(s.bin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			s.t.Fatalf("start dnsmasq: %v", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		if s.ready(done) {
			s.cmd, s.done, s.log = cmd, done, logf
			return
		}
		cmd.Process.Kill()
		<-done
		if attempt == 20 {
			b, _ := os.ReadFile(logf.Name())
			logf.Close()
			s.t.Fatalf("dnsmasq did not start on port %d: %s", s.port, b)
		}
		logf.Truncate(0)
		logf.Seek(0, 0)
		time.Sleep(50 * time.Millisecond) // between bounded retries of a bind, not synchronisation
	}
}

// ready waits up to 5s for dnsmasq to listen on its TCP port; false if it
// exited first.
func (s *Server) ready(done <-chan struct{}) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond); err == nil {
			c.Close()
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// freePort returns a port free on 127.0.0.1 for both TCP and UDP.
func freePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port for both TCP and UDP on 127.0.0.1")
	return 0
}
