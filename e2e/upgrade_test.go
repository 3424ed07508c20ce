package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tether-lb/tether/tlsterm/tlstest"
)

// upgradable is a tether whose output goes to pipes of the test's, not to
// exec's copying goroutines: the processes it starts on SIGUSR2 inherit
// them, and the first one's exit must not wait for theirs.
type upgradable struct {
	*tether
	copied sync.WaitGroup // the pipes' readers: done when every process writing them has exited
}

func startUpgradable(t *testing.T, nodes []*testNode, extra ...string) *upgradable {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"--listen", addr, "--admin", "127.0.0.1:0", "--log-level", "debug", "--health-interval", "1h"}
	for _, n := range nodes {
		args = append(args, "--node", n.name+"=http://"+n.addr)
	}
	args = append(args, extra...)
	u := &upgradable{tether: &tether{cmd: exec.Command(tetherBin, args...), addr: addr, stderr: &syncBuffer{}, stdout: &syncBuffer{}, exited: make(chan struct{})}}
	var writers []*os.File
	for _, sink := range []*syncBuffer{u.stdout, u.stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		writers = append(writers, w)
		u.copied.Go(func() { io.Copy(sink, r); r.Close() })
	}
	u.cmd.Stdout, u.cmd.Stderr = writers[0], writers[1]
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, w := range writers {
		w.Close()
	}
	go func() { u.cmd.Wait(); close(u.exited) }()
	t.Cleanup(func() { u.stopAll(t) })
	if !waitFor(5*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil && strings.Contains(u.stderr.String(), `"message":"listening"`)
	}) {
		t.Fatalf("tether did not listen on %s: %s", addr, u.stderr.String())
	}
	return u
}

// stopAll interrupts the first process and every process a hand-over
// started (by the PIDs they logged), and waits until all have closed
// their output.
func (u *upgradable) stopAll(t *testing.T) {
	pids := append([]int{u.cmd.Process.Pid}, u.newPIDs()...)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGINT)
	}
	done := make(chan struct{})
	go func() { u.copied.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		<-done
	}
	if t.Failed() {
		t.Logf("tether stderr:\n%s", tail(u.stderr.String(), 6000))
	}
}

// logLines returns the log lines with the given message.
func (u *upgradable) logLines(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(u.stderr.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// newPIDs are the PIDs of the processes that took over, in order.
func (u *upgradable) newPIDs() []int {
	var out []int
	for _, m := range u.logLines("hand-over: serving") {
		out = append(out, int(num(m, "pid")))
	}
	return out
}

// waitNewPID waits for the n-th process to take over and returns its PID.
func (u *upgradable) waitNewPID(t *testing.T, n int) int {
	t.Helper()
	if !waitFor(15*time.Second, func() bool { return len(u.newPIDs()) >= n }) {
		t.Fatalf("no process %d took over", n)
	}
	return u.newPIDs()[n-1]
}

// alive reports whether pid exists and has not exited (a zombie has).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// nodeState returns a node's state in /status.
func nodeState(t *testing.T, admin, name string) string {
	t.Helper()
	_, _, body := adminReq(t, "GET", "http://"+admin+"/status", nil, "")
	var st struct {
		Nodes []struct{ Name, State string }
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v: %s", err, body)
	}
	for _, n := range st.Nodes {
		if n.Name == name {
			return n.State
		}
	}
	t.Fatalf("/status has no node %s: %s", name, body)
	return ""
}

// handedOver is the old process's line once the new one serves and the
// sessions moved (or failed to).
const handedOver = "hand-over done: the new process serves; retiring"

// TestUpgradeBinary: SIGUSR2 under a steady load of new and kept-alive
// connections: a new process takes the listening sockets and the nodes'
// states, the old one retires (its requests in flight end) and exits; no
// connection is refused and no request fails. A node drained through the admin endpoint before is still
// draining after. A second hand-over, while the first old process still
// drains a long poll, works too, and that poll gets its answer.
func TestUpgradeBinary(t *testing.T) {
	n1, n2 := startNode(t, node1, 2*time.Second), startNode(t, node2, 2*time.Second)
	a := startUpgradable(t, []*testNode{n1, n2}, "--drain-timeout", "10s")
	admin := a.adminAddr(t)
	if code, _, body := adminReq(t, "POST", "http://"+admin+"/nodes/"+node2+"/drain", nil, ""); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}

	loads := []*steady{
		{addr: a.addr, path: "/cobrowse/upgrade", keepAlive: true, want: node1},
		{addr: a.addr, path: "/cobrowse/upgrade", keepAlive: true, want: node1},
		{addr: a.addr, path: "/cobrowse/upgrade", want: node1},
		{addr: a.addr, path: "/cobrowse/upgrade", want: node1},
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, l := range loads {
		wg.Go(func() { l.run(stop) })
	}
	total := func() (n int64) {
		for _, l := range loads {
			n += l.ok.Load()
		}
		return n
	}
	if !waitFor(5*time.Second, func() bool { return total() > 50 }) {
		t.Fatal("no load through the first process")
	}
	// A long poll held by the first process: it drains until the answer.
	poll := dialRaw(t, a.addr)
	poll.write(t, get("/cobrowse/poll?session=up&role=agent", "Cookie: gcbSessionServer="+node1+"\r\n"))

	oldPID := a.cmd.Process.Pid
	if err := a.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	newPID := a.waitNewPID(t, 1)
	if newPID == oldPID {
		t.Fatal("the same process took over")
	}
	if !waitFor(5*time.Second, func() bool { return len(a.logLines(handedOver)) == 1 }) {
		t.Fatal("the old process did not log the hand-over")
	}
	done := a.logLines(handedOver)[0]
	if int(num(done, "new_pid")) != newPID || int(num(done, "pid")) != oldPID || done["version"] == "" || done["new_version"] == "" {
		t.Fatalf("hand-over line %v", done)
	}
	if s := nodeState(t, admin, node2); s != "draining" {
		t.Fatalf("%s after the hand-over: %s, want draining", node2, s)
	}
	// The old process still drains (the poll): a second hand-over now.
	if !alive(oldPID) {
		t.Fatal("the old process exited while its long poll was open")
	}
	before := total()
	if err := syscall.Kill(newPID, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	thirdPID := a.waitNewPID(t, 2)
	if thirdPID == newPID || thirdPID == oldPID {
		t.Fatalf("second hand-over: pid %d", thirdPID)
	}
	if !waitFor(5*time.Second, func() bool { return !alive(newPID) }) {
		t.Fatal("the second process did not exit after handing over")
	}
	r := poll.withDeadline(5*time.Second).readResponse(t, false)
	if r.status != 204 && r.status != 200 {
		t.Fatalf("the long poll held across the hand-overs got %d", r.status)
	}
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the first process did not exit after its drain")
	}
	if st := a.cmd.ProcessState; !st.Success() {
		t.Fatalf("first process exit status %v", st)
	}
	if !waitFor(5*time.Second, func() bool { return total() > before+100 }) {
		t.Fatal("no load through the third process")
	}
	close(stop)
	wg.Wait()
	for _, l := range loads {
		if f := l.failed.Load(); f > 0 {
			t.Fatalf("%d requests failed across the hand-overs; first: %v", f, l.firstErr.Load())
		}
	}
	if s := nodeState(t, admin, node2); s != "draining" {
		t.Fatalf("%s after two hand-overs: %s, want draining", node2, s)
	}
	t.Logf("%d requests, none failed; pids %d → %d → %d", total(), oldPID, newPID, thirdPID)
}

// TestUpgradeBinaryFails: a new binary that exits at once leaves the old
// process serving, with one Error line saying why; once the binary at the
// same path is a working tether, the next SIGUSR2 hands over.
func TestUpgradeBinaryFails(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tether")
	install := func(src string) {
		t.Helper()
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin+".new", b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(bin+".new", bin); err != nil { // replaced in place, as a package manager does
			t.Fatal(err)
		}
	}
	install("/bin/false")
	n1 := startNode(t, node1, 0)
	a := startUpgradable(t, []*testNode{n1}, "--upgrade-binary", bin, "--handover-timeout", "10s")
	l := &steady{addr: a.addr, path: "/cobrowse/upgrade", keepAlive: true, want: node1}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { l.run(stop) })
	defer func() { close(stop); wg.Wait() }()

	if err := a.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return len(a.logLines("hand-over failed: this process goes on serving")) == 1 }) {
		t.Fatal("no failure logged")
	}
	failed := a.logLines("hand-over failed: this process goes on serving")[0]
	if failed["level"] != "error" || !strings.Contains(fmt.Sprint(failed["error"]), "exited") {
		t.Fatalf("failure line %v", failed)
	}
	before := l.ok.Load()
	if !waitFor(5*time.Second, func() bool { return l.ok.Load() > before+20 }) {
		t.Fatal("the old process stopped serving after a failed hand-over")
	}
	if len(a.newPIDs()) != 0 {
		t.Fatal("a process took over")
	}
	select {
	case <-a.exited:
		t.Fatal("the old process exited")
	default:
	}

	install(tetherBin)
	if err := a.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	newPID := a.waitNewPID(t, 1)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the old process did not exit after handing over")
	}
	before = l.ok.Load()
	if !waitFor(5*time.Second, func() bool { return l.ok.Load() > before+20 }) {
		t.Fatalf("nothing served by the new process %d", newPID)
	}
	if f := l.failed.Load(); f > 0 {
		t.Fatalf("%d requests failed; first: %v", f, l.firstErr.Load())
	}
}

// TestUpgradeBinaryTLS: the TLS listener moves with the plain and admin
// ones; new TLS connections reach the new process, and the old one, its
// idle TLS connection closed by its drain, exits.
func TestUpgradeBinaryTLS(t *testing.T) {
	n1 := startNode(t, node1, 0)
	tlsAddr := freeAddr(t)
	a := startUpgradable(t, []*testNode{n1}, "--tls-listen", tlsAddr, "--tls-self-signed", "--drain-timeout", "3s")
	get := func(c *tls.Conn) int {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /cobrowse/tls HTTP/1.1\r\nHost: a\r\n\r\n")
		r, err := parseResponse(bufio.NewReader(c), false)
		if err != nil {
			t.Fatal(err)
		}
		return r.status
	}
	dial := func() *tls.Conn {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tlsAddr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	held := dial()
	if s := get(held); s != 200 {
		t.Fatalf("before: %d", s)
	}
	if err := a.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	a.waitNewPID(t, 1)
	recv := a.logLines("hand-over: state received")
	if len(recv) != 1 || num(recv[0], "listeners") != 3 {
		t.Fatalf("state received: %v", recv)
	}
	if s := get(dial()); s != 200 {
		t.Fatalf("new TLS connection after the hand-over: %d", s)
	}
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the old process did not exit")
	}
}

// TestUpgradeRefusedThenSIGTERM: a new binary that takes the listeners and
// then refuses its configuration (here a certificate file gone) leaves the
// old process serving with its listeners as they were: after it has
// accepted a connection again, SIGTERM stops it at once, its accept loops
// not stuck in the kernel waiting for the next connection.
func TestUpgradeRefusedThenSIGTERM(t *testing.T) {
	dir := t.TempDir()
	crt, key, err := tlstest.WritePair(dir, tlstest.Leaf{})
	if err != nil {
		t.Fatal(err)
	}
	n1 := startNode(t, node1, 0)
	a := startUpgradable(t, []*testNode{n1}, "--tls-listen", freeAddr(t), "--cert", crt, "--key", key, "--handover-timeout", "10s")
	if err := os.Rename(crt, crt+".gone"); err != nil { // the new process's configuration fails after it took the listeners
		t.Fatal(err)
	}
	if err := a.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return len(a.logLines("hand-over failed: this process goes on serving")) == 1 }) {
		t.Fatal("no failure logged")
	}
	for i := range 2 { // accepted by the old process, which then waits for the next
		c, err := net.DialTimeout("tcp", a.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, get("/cobrowse/refused", "Connection: close\r\n")); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 200") {
			t.Fatalf("request %d after the failed hand-over: %q, %v", i, b, err)
		}
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM after a failed hand-over: the old process did not exit")
	}
}

// TestUpgradeSIGTERMCallsOff: SIGTERM to the old process while the new one
// has taken the listeners but does not serve yet (its certificate file, a
// FIFO here, is not readable yet) calls the hand-over off: the new process
// is killed, not left serving alone once the old one has exited.
func TestUpgradeSIGTERMCallsOff(t *testing.T) {
	dir := t.TempDir()
	crt, key, err := tlstest.WritePair(dir, tlstest.Leaf{})
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(crt)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(crt); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(crt, 0o600); err != nil {
		t.Fatal(err)
	}
	fed := make(chan error, 1)
	go func() { fed <- os.WriteFile(crt, pem, 0o600) }() // the old process reads it as it starts
	n1 := startNode(t, node1, 0)
	a := startUpgradable(t, []*testNode{n1}, "--tls-listen", freeAddr(t), "--cert", crt, "--key", key, "--handover-timeout", "20s")
	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return len(a.logLines("hand-over: state received")) == 1 }) {
		t.Fatal("the new process took nothing")
	}
	newPID := int(num(a.logLines("hand-over: state received")[0], "pid"))
	t.Cleanup(func() {
		if alive(newPID) { // left serving: this test failed
			syscall.Kill(newPID, syscall.SIGKILL)
		}
	})
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the old process did not exit on SIGTERM")
	}
	// A new process still waiting for its certificate gets it now.
	if f, err := os.OpenFile(crt, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		f.Write(pem)
		f.Close()
	}
	if !waitFor(10*time.Second, func() bool { return !alive(newPID) }) {
		t.Fatalf("the new process %d serves on after SIGTERM to the old one during the hand-over", newPID)
	}
	if !waitFor(5*time.Second, func() bool { return len(a.logLines("hand-over called off: shutting down")) == 1 }) {
		t.Fatal("no line says the hand-over was called off")
	}
}
