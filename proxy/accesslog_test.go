package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// logBuffer collects log lines written from many goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns the JSON lines written so far, each with its raw text
// under "_raw".
func (l *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	text := l.b.String()
	l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		m["_raw"] = line
		out = append(out, m)
	}
	return out
}

// answerOK is a node that answers every request 200 "ok" on a keep-alive
// connection.
func answerOK(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		if err := skipHead(br); err != nil {
			return
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
	}
}

// startLoggedServer runs a Server in front of an answerOK node with the
// access log (and the process log) in buffers.
func startLoggedServer(t *testing.T, cfg Config) (s *Server, addr string, access, log *logBuffer) {
	t.Helper()
	node := serveConns(t, answerOK)
	cfg.Pool.Nodes = oneNode(node).Pool.Nodes
	cfg.AccessLog = true
	access, log = &logBuffer{}, &logBuffer{}
	s, addr = serveWith(t, cfg, zerolog.New(log), zerolog.New(access), false)
	return s, addr, access, log
}

// dialFrom dials addr from the loopback address ip when the system lets a
// socket bind it (Linux routes all of 127/8 to lo), else from the default.
// It returns the connection and the remote address tether will log.
func dialFrom(t *testing.T, ip, addr string) (net.Conn, string) {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	if c, err := d.Dial("tcp", addr); err == nil {
		return c, ip
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c, "127.0.0.1"
}

// readToEnd reads c until tether closes it (at most 5s) and returns when
// that happened.
func readToEnd(c net.Conn) time.Time {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, c)
	return time.Now()
}

// TestAccessLogRefusedHead: a head refused with 400, 408 or 431 is logged
// with what was read of it only. Its line has no method or path (not those
// of a request an earlier client sent through the same pooled exchange, with
// its token), the refused client's address, and a dur that runs from the
// head's first byte: a head trickled for a while, or held until the head
// timeout, logs that time. Two clients alternate, from 127.0.0.1 and
// 127.0.0.2, each refusal after a served request.
func TestAccessLogRefusedHead(t *testing.T) {
	const headTimeout = time.Second
	// pace is the time between a refused head's first bytes and the rest;
	// its line's dur must show at least a quarter of it: tether reads the
	// first bytes when they come, unless its goroutine waits longer than
	// the other three quarters to run.
	const pace = 400 * time.Millisecond
	_, addr, access, _ := startLoggedServer(t, Config{HeaderTimeout: headTimeout, MaxHeaderBytes: 1024})
	const secretPath = "/cobrowse/echo-headers?session_token=FIRST-CLIENT-SECRET"

	cases := []struct {
		status int
		send   func(c net.Conn, done <-chan struct{})
		minDur time.Duration
	}{
		{400, func(c net.Conn, _ <-chan struct{}) {
			io.WriteString(c, "GET /refused HTTP/1.1\r\nHost: a\r\n")
			time.Sleep(pace)
			io.WriteString(c, "Bad Name: x\r\n\r\n")
		}, pace / 4},
		{431, func(c net.Conn, _ <-chan struct{}) {
			io.WriteString(c, "GET /refused HTTP/1.1\r\nHost: a\r\n")
			time.Sleep(pace)
			io.WriteString(c, "X-Big: "+strings.Repeat("a", 2000)+"\r\n\r\n")
		}, pace / 4},
		{408, func(c net.Conn, done <-chan struct{}) {
			io.WriteString(c, "GET /refused HTTP/1.1\r\nX-Slow: ")
			for range 100 { // one byte every 20ms until tether gives up
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if _, err := io.WriteString(c, "a"); err != nil {
					return
				}
			}
		}, headTimeout},
	}
	for _, tc := range cases {
		for round := range 3 {
			// The first client: a request with a token in its target,
			// served; its connection closes, so its exchange goes back to
			// the pool before the second client's first byte.
			a, aIP := dialFrom(t, "127.0.0.1", addr)
			io.WriteString(a, "GET "+secretPath+" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			readToEnd(a)
			a.Close()

			b, bIP := dialFrom(t, "127.0.0.2", addr)
			done := make(chan struct{})
			var ended time.Time
			var wg sync.WaitGroup
			wg.Go(func() { ended = readToEnd(b); close(done) })
			began := time.Now()
			tc.send(b, done)
			wg.Wait()
			b.Close()
			elapsed := ended.Sub(began)

			// The line is written before the connection closes.
			var refused, served []map[string]any
			for _, l := range access.lines(t) {
				switch num := l["status"].(float64); int(num) {
				case tc.status:
					refused = append(refused, l)
				case 200:
					served = append(served, l)
				}
			}
			if len(refused) != round+1 || len(served) < 1 {
				t.Fatalf("%d round %d: %d refused and %d served lines, want %d and some; log:\n%s", tc.status, round, len(refused), len(served), round+1, access.b.String())
			}
			l := refused[round]
			raw := l["_raw"].(string)
			if _, ok := l["method"]; ok || strings.Contains(raw, "SECRET") {
				t.Errorf("%d: refused line carries a method or another request's target: %s", tc.status, raw)
			}
			if _, ok := l["path"]; ok {
				t.Errorf("%d: refused line has a path, but its head was never parsed: %s", tc.status, raw)
			}
			if l["remote"] != bIP {
				t.Errorf("%d: refused line's remote %v, want %s", tc.status, l["remote"], bIP)
			}
			dur := time.Duration(l["dur"].(float64) * float64(time.Millisecond))
			if dur < tc.minDur || dur > elapsed+5*time.Millisecond {
				t.Errorf("%d: dur %v, want at least %v and at most the %v the client saw: %s", tc.status, dur, tc.minDur, elapsed, raw)
			}
			s := served[len(served)-1]
			if s["path"] != secretPath || s["method"] != "GET" || s["remote"] != aIP {
				t.Errorf("served line %s, want GET %s from %s", s["_raw"], secretPath, aIP)
			}
		}
	}
}

// TestLogSampler: one event a period is let through, and it tells how many
// were left out since the last one.
func TestLogSampler(t *testing.T) {
	var l logSampler
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at         time.Duration
		ok         bool
		suppressed uint64
	}{
		{0, true, 0},
		{100 * time.Millisecond, false, 0},
		{500 * time.Millisecond, false, 0},
		{999 * time.Millisecond, false, 0},
		{time.Second, true, 3},
		{1500 * time.Millisecond, false, 0},
		{5 * time.Second, true, 1},
		{5 * time.Second, false, 0},
	}
	for i, st := range steps {
		n, ok := l.allow(t0.Add(st.at), time.Second)
		if ok != st.ok || n != st.suppressed {
			t.Fatalf("step %d at %v: allow = %d, %v; want %d, %v", i, st.at, n, ok, st.suppressed, st.ok)
		}
	}
}

// TestMaxConnsRefusals: connections past --max-conns are closed at once,
// counted in tether_refused_connections_total{reason="max_conns"}, and
// logged one line a second at most, with the count it left out.
func TestMaxConnsRefusals(t *testing.T) {
	s, addr, _, log := startLoggedServer(t, Config{MaxConns: 1})
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	// The held connection is counted before the next accept.
	if !waitCond(2*time.Second, func() bool { return s.Conns() == 1 }) {
		t.Fatalf("%d connections open, want 1", s.Conns())
	}
	const refusals = 6
	began := time.Now()
	for range refusals {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("connection past --max-conns: read %d, %v; want it closed", n, err)
		}
		c.Close()
	}
	seconds := int(time.Since(began)/time.Second) + 1

	rec := httptest.NewRecorder()
	s.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1/metrics", nil))
	want := fmt.Sprintf(`tether_refused_connections_total{reason="max_conns"} %d`, refusals)
	if !strings.Contains(rec.Body.String(), want+"\n") {
		t.Errorf("/metrics has no %q", want)
	}

	var lines []map[string]any
	for _, l := range log.lines(t) {
		if l["message"] == "connection refused at --max-conns" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 || len(lines) > seconds {
		t.Fatalf("%d refusal lines in %d s, want 1 to %d:\n%s", len(lines), seconds, seconds, log.b.String())
	}
	if l := lines[0]; l["level"] != "warn" || l["suppressed"] != 0.0 || l["max_conns"] != 1.0 || l["remote"] != "127.0.0.1" {
		t.Errorf("first refusal line %s, want warn, suppressed 0, max_conns 1, remote 127.0.0.1", l["_raw"])
	}
}

// waitCond checks cond every 5ms until it holds or d has passed.
func waitCond(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
