// Package e2e runs the built tether binary against fake co-browse nodes on
// loopback ports chosen at run time.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/bench"
)

// tetherBin is the tether binary the tests run: $TETHER_BIN/tether when
// TETHER_BIN names a directory (make test builds bin/ and sets it), else
// one built from ../cmd/tether for this run.
var tetherBin string

func TestMain(m *testing.M) {
	if dir := os.Getenv("TETHER_BIN"); dir != "" {
		tetherBin = filepath.Join(dir, "tether")
		if !filepath.IsAbs(dir) {
			fmt.Fprintf(os.Stderr, "TETHER_BIN=%s: want an absolute directory (make test sets $(CURDIR)/bin)\n", dir)
			os.Exit(1)
		}
		if _, err := os.Stat(tetherBin); err != nil {
			fmt.Fprintf(os.Stderr, "TETHER_BIN: %v (make build writes it)\n", err)
			os.Exit(1)
		}
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "tether-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tetherBin = filepath.Join(dir, "tether")
	build := exec.Command("go", "build", "-o", tetherBin, "github.com/tether-lb/tether/cmd/tether")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tether:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// countingListener counts the connections a node accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// testNode is a fake co-browse node served in the test process.
type testNode struct {
	*bench.Node
	name string
	addr string
	ln   *countingListener
	done chan struct{}
}

func startNode(t *testing.T, name string, pollWait time.Duration) *testNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startNodeOnWait(t, name, ln, pollWait)
}

// startNodeOn serves a fake node on a listener the test made (a TLS one).
func startNodeOn(t *testing.T, name string, ln net.Listener) *testNode {
	return startNodeOnWait(t, name, ln, 0)
}

func startNodeOnWait(t *testing.T, name string, ln net.Listener, pollWait time.Duration) *testNode {
	t.Helper()
	cl := &countingListener{Listener: ln}
	n := &testNode{
		Node: bench.NewNode(bench.NodeConfig{Name: name, PollWait: pollWait}, zerolog.Nop()),
		name: name, addr: ln.Addr().String(), ln: cl, done: make(chan struct{}),
	}
	go func() {
		defer close(n.done)
		n.Serve(cl)
	}()
	t.Cleanup(n.stop)
	return n
}

var stopMu sync.Mutex

func (n *testNode) stop() {
	stopMu.Lock()
	defer stopMu.Unlock()
	select {
	case <-n.done:
		return
	default:
	}
	n.Close()
	<-n.done
}

// tether is a running tether process.
type tether struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	stdout *syncBuffer
	exited chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startTether runs tether on a free loopback port with the given nodes and
// extra flags, and waits until it accepts connections.
func startTether(t *testing.T, nodes []*testNode, extra ...string) *tether {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for i := 0; i+1 < len(extra); i++ {
		if extra[i] == "--listen" {
			addr = extra[i+1] // the last --listen wins, as in tether
		}
	}
	args := []string{"--listen", addr, "--admin", "127.0.0.1:0", "--log-level", "debug", "--health-interval", "100ms", "--health-timeout", "300ms"}
	for _, n := range nodes {
		args = append(args, "--node", n.name+"=http://"+n.addr)
	}
	args = append(args, extra...)
	tt := &tether{cmd: exec.Command(tetherBin, args...), addr: addr, stderr: &syncBuffer{}, stdout: &syncBuffer{}, exited: make(chan struct{})}
	tt.cmd.Stderr, tt.cmd.Stdout = tt.stderr, tt.stdout
	if err := tt.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { tt.cmd.Wait(); close(tt.exited) }()
	t.Cleanup(func() {
		tt.cmd.Process.Signal(os.Interrupt)
		select {
		case <-tt.exited:
		case <-time.After(5 * time.Second):
			tt.cmd.Process.Kill()
			<-tt.exited
		}
		if t.Failed() {
			t.Logf("tether stderr:\n%s", tail(tt.stderr.String(), 4000))
		}
	})
	// Ready once it logged its listener (another tether may already hold
	// the same address with SO_REUSEPORT) and a connection goes through.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(tt.stderr.String(), `"message":"listening"`) {
			if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
				c.Close()
				return tt
			}
		}
		select {
		case <-tt.exited:
			t.Fatalf("tether exited: %s", tt.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("tether did not listen on %s: %s", addr, tt.stderr.String())
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// waitGoroutine waits, up to 5 s, for a goroutine running fn (a function
// name as stack dumps print it, e.g. "proxy.watchClient") in tether's
// goroutine profile; tether must run with --pprof. It reports whether one
// appeared.
func (tt *tether) waitGoroutine(t *testing.T, fn string) bool {
	t.Helper()
	url := "http://" + tt.adminAddr(t) + "/debug/pprof/goroutine?debug=1"
	return waitFor(5*time.Second, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		return resp.StatusCode == 200 && bytes.Contains(b, []byte(fn+"+0x"))
	})
}

// adminAddr returns the admin listener's address from tether's log.
func (tt *tether) adminAddr(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(tt.stderr.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["message"] == "admin listening" {
				return m["addr"].(string)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("tether logged no admin address")
	return ""
}

// accessLines returns the access-log lines tether wrote so far (it flushes
// every 200ms).
func (tt *tether) accessLines(t *testing.T) []map[string]any {
	var out []map[string]any
	s := tt.stdout.String()
	// A line still being written has no newline yet: leave it for later.
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	} else {
		s = ""
	}
	for _, line := range strings.Split(s, "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("access log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// rawConn is a client connection that speaks raw HTTP/1.1.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, br: bufio.NewReaderSize(c, 64<<10)}
}

// response is a parsed answer.
type response struct {
	status int
	header map[string][]string
	body   []byte
}

func (r *response) get(k string) string {
	if v := r.header[strings.ToLower(k)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// readResponse reads one answer, decoding the body by its framing. head is
// true when the request was HEAD.
func (c *rawConn) readResponse(t *testing.T, head bool) *response {
	t.Helper()
	r, err := parseResponse(c.br, head)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// parseResponse reads one answer from br; it does not need the test and
// may run on any goroutine.
func parseResponse(br *bufio.Reader, head bool) (*response, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("read status line: %w (read %q)", err, line)
	}
	var r response
	if _, err := fmt.Sscanf(line, "HTTP/1.1 %d", &r.status); err != nil {
		return nil, fmt.Errorf("bad status line %q", line)
	}
	r.header = map[string][]string{}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("read header: %w", err)
		}
		l = strings.TrimRight(l, "\r\n")
		if l == "" {
			break
		}
		k, v, _ := strings.Cut(l, ":")
		k = strings.ToLower(strings.TrimSpace(k))
		r.header[k] = append(r.header[k], strings.TrimSpace(v))
	}
	if head || r.status == 204 || r.status == 304 || r.status < 200 {
		return &r, nil
	}
	switch {
	case strings.EqualFold(r.get("Transfer-Encoding"), "chunked"):
		var body bytes.Buffer
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return nil, fmt.Errorf("chunk size: %w", err)
			}
			var n int
			if _, err := fmt.Sscanf(strings.TrimSpace(l), "%x", &n); err != nil {
				return nil, fmt.Errorf("chunk size line %q: %w", l, err)
			}
			if n == 0 {
				for {
					tl, err := br.ReadString('\n')
					if err != nil || tl == "\r\n" {
						break
					}
				}
				break
			}
			if _, err := io.CopyN(&body, br, int64(n)); err != nil {
				return nil, fmt.Errorf("chunk data: %w", err)
			}
			if crlf, err := br.Peek(2); err != nil || string(crlf) != "\r\n" {
				return nil, fmt.Errorf("chunk of %d bytes not followed by CRLF", n)
			}
			br.Discard(2)
		}
		r.body = body.Bytes()
	case r.get("Content-Length") != "":
		var n int64
		if _, err := fmt.Sscan(r.get("Content-Length"), &n); err != nil {
			return nil, fmt.Errorf("Content-Length %q", r.get("Content-Length"))
		}
		r.body = make([]byte, n)
		if _, err := io.ReadFull(br, r.body); err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
	default:
		r.body, _ = io.ReadAll(br)
	}
	return &r, nil
}

// do sends one raw request and reads its answer.
func (c *rawConn) do(t *testing.T, req string) *response {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c.readResponse(t, strings.HasPrefix(req, "HEAD "))
}

func get(path, extra string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: example.test\r\n" + extra + "\r\n"
}
