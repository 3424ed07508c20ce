//go:build linux

package handover

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary plays the new process when EnvAddr is set: it takes the
// state, checks it and answers Ready (or Abort, or exits) as envMode says.
const envMode = "TETHER_HANDOVER_TEST_MODE"

func TestMain(m *testing.M) {
	if addr := os.Getenv(EnvAddr); addr != "" {
		os.Exit(playNew(addr, os.Getenv(envMode)))
	}
	os.Exit(m.Run())
}

func playNew(addr, mode string) int {
	switch mode {
	case "exit":
		return 3
	case "sessions", "v1":
		return playSessions(addr, mode)
	}
	st, c, err := Take(addr, Hello{PID: os.Getpid(), Version: "test-new"}, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "take:", err)
		return 1
	}
	defer st.Close()
	if mode == "stall" { // took the state, never Ready: until killed
		fmt.Println("taken")
		time.Sleep(30 * time.Second)
		return 1
	}
	if mode == "abort" {
		c.Abort("configuration refused")
		return 1
	}
	if len(st.Listeners) != 1 || st.From.Version != "test-old" || len(st.Nodes) != 1 {
		c.Abort(fmt.Sprintf("unexpected state %+v", st))
		return 1
	}
	ln, err := net.FileListener(st.Listeners[0].File)
	if err != nil {
		c.Abort(err.Error())
		return 1
	}
	defer ln.Close()
	if err := c.Ready(); err != nil {
		return 1
	}
	// Serve one connection, then exit.
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	sc, err := ln.Accept()
	if err != nil {
		return 1
	}
	sc.Write([]byte("new"))
	sc.Close()
	return 0
}

// playSessions is a new process that can take sessions ("sessions") or
// one of a binary that cannot ("v1": no capability in its Hello). It
// writes "moved" to each connection it received, after Commit, and
// prints what it saw on stdout.
func playSessions(addr, mode string) int {
	self := Hello{PID: os.Getpid(), Version: "test-new"}
	if mode == "sessions" {
		self.Caps = []string{CapSessions}
	}
	st, c, err := Take(addr, self, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "take:", err)
		return 1
	}
	st.Close()
	fmt.Printf("sessions=%v\n", c.Sessions())
	if err := c.Ready(); err != nil || !c.Sessions() {
		return 0
	}
	got, err := c.Receive(time.Now().Add(5*time.Second), 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "receive:", err)
		return 1
	}
	defer got.Close()
	if err := c.Taken(); err != nil {
		return 1
	}
	v, err := c.AwaitCommit(time.Now().Add(5 * time.Second))
	fmt.Printf("verdict=%s conns=%d\n", v, len(got.Conns))
	if v != Committed {
		fmt.Fprintln(os.Stderr, "commit:", err)
		return 1
	}
	for _, it := range got.Conns {
		unix.Write(it.FDs[0], []byte("moved"))
	}
	c.Statuses(func(e []json.RawMessage) { fmt.Printf("status=%s\n", e[0]) })
	return 0
}

// offerOf returns an Offer that runs this test binary as the new process.
func offerOf(t *testing.T, mode string) (*Offer, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	t.Setenv(envMode, mode)
	return &Offer{
		Binary:  os.Args[0],
		Args:    []string{"-test.run=^$"},
		Stderr:  os.Stderr,
		Timeout: 10 * time.Second,
		State: State{
			From:      Hello{PID: os.Getpid(), Version: "test-old"},
			Listeners: []Listener{{Name: "listen", Addr: ln.Addr().String(), File: f}},
			Nodes:     []NodeState{{Name: "n1", URL: "http://127.0.0.1:1", Down: true}},
		},
	}, ln
}

func TestOfferRun(t *testing.T) {
	o, ln := offerOf(t, "")
	child, err := o.Run()
	if err != nil {
		t.Fatal(err)
	}
	if child.Version != "test-new" || child.PID == os.Getpid() {
		t.Fatalf("child %+v", child.Hello)
	}
	ln.Close() // the old process stops accepting
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 3)
	if _, err := c.Read(b); err != nil || string(b) != "new" {
		t.Fatalf("read %q, %v", b, err)
	}
	select {
	case err := <-child.Exited:
		if !strings.Contains(err.Error(), "exit status 0") {
			t.Fatalf("child ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("child did not exit")
	}
}

// TestOfferFails: a new process that cannot start, exits at once or gives
// up ends the hand-over with an error, well before the timeout, and the old
// listener still accepts.
func TestOfferFails(t *testing.T) {
	cases := []struct {
		name, mode, binary, want string
	}{
		{"exits at once", "exit", "", "exited: exit status 3"},
		{"gives up", "abort", "", "configuration refused"},
		{"no such binary", "", "/nonexistent/tether", "no such file"},
		{"/bin/false", "", "/bin/false", "exit status 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, ln := offerOf(t, tc.mode)
			if tc.binary != "" {
				o.Binary = tc.binary
			}
			start := time.Now()
			_, err := o.Run()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want an error with %q", err, tc.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %s", d)
			}
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
			sc, err := ln.Accept()
			if err != nil {
				t.Fatalf("old listener after a failed hand-over: %v", err)
			}
			sc.Close()
			if !nonblocking(t, ln) {
				t.Fatal("old listener left blocking by a failed hand-over")
			}
		})
	}
}

// TestOfferTimeout: a new process that never connects is killed at the
// timeout.
func TestOfferTimeout(t *testing.T) {
	o, _ := offerOf(t, "")
	o.Binary, o.Args = "/bin/sleep", []string{"30"}
	o.Timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := o.Run()
	if err == nil || !strings.Contains(err.Error(), "wait for the new process") {
		t.Fatalf("Run = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
}

// TestOfferRefusesStranger: a process that is not the new one (here, the
// old process itself: another PID) connects first; it gets nothing, not a
// byte of the stream, and the hand-over goes on with the new process.
func TestOfferRefusesStranger(t *testing.T) {
	o, _ := offerOf(t, "")
	got := make(chan []byte, 1)
	testHookListening = func(addr string) {
		c, err := net.Dial("unix", addr) // queued before the new process starts
		if err != nil {
			got <- []byte("dial: " + err.Error())
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, 64)
			n, _ := c.Read(b) // EOF once refused
			got <- b[:n]
		}()
	}
	t.Cleanup(func() { testHookListening = nil })
	refused := make(chan error, 4)
	o.Refused = func(err error) { refused <- err }
	child, err := o.Run()
	if err != nil {
		t.Fatal(err)
	}
	if b := <-got; len(b) != 0 {
		t.Fatalf("the stranger read %q", b)
	}
	select {
	case err := <-refused:
		if !strings.Contains(err.Error(), "is not the new process") {
			t.Fatalf("refused with %v", err)
		}
	default:
		t.Fatal("the stranger was not refused")
	}
	c, err := net.DialTimeout("tcp", o.State.Listeners[0].Addr, 5*time.Second)
	if err == nil {
		c.Close()
	}
	<-child.Exited
}

// TestOfferSessions: a new process that can take sessions gets the
// session phase after its Ready: a connection moves, and after Commit the
// new process writes on it; the Status records reach it.
func TestOfferSessions(t *testing.T) {
	o, _ := offerOf(t, "sessions")
	var out bytes.Buffer
	o.Stdout = &out
	o.State.From.Caps = []string{CapSessions}
	child, err := o.Run()
	if err != nil {
		t.Fatal(err)
	}
	m := child.Mover
	if m == nil {
		t.Fatal("no session phase with a new process that can move sessions")
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	m.SetDeadline(time.Now().Add(10 * time.Second))
	if err := m.Send(nil, []Item{{Meta: json.RawMessage(`{"remote":"127.0.0.1"}`), FDs: fds[:1]}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Await(); err != nil {
		t.Fatal(err)
	}
	if err := m.Commit(); err != nil {
		t.Fatal(err)
	}
	unix.Close(fds[0]) // Commit: this process's copy goes
	if err := m.Status([]json.RawMessage{json.RawMessage(`{"pid":1}`)}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	peer := os.NewFile(uintptr(fds[1]), "peer")
	fds[1] = -1
	defer peer.Close()
	peer.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(peer)
	if string(b) != "moved" {
		t.Fatalf("the moved connection read %q", b)
	}
	if err := <-child.Exited; !strings.Contains(err.Error(), "exit status 0") {
		t.Fatalf("child: %v", err)
	}
	if want := "sessions=true\nverdict=committed conns=1\nstatus={\"pid\":1}\n"; out.String() != want {
		t.Fatalf("child printed %q, want %q", out.String(), want)
	}
}

// TestOfferSessionsOneSided: a new binary that does not know sessions (no
// capability in its Hello) and an old one that does not, each with one
// that does: the hand-over ends at Ready as before, with no Mover, and
// neither waits for the other.
func TestOfferSessionsOneSided(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		oldCaps    []string
	}{
		{"new process without sessions", "v1", []string{CapSessions}},
		{"old process without sessions", "sessions", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, _ := offerOf(t, tc.mode)
			var out bytes.Buffer
			o.Stdout = &out
			o.State.From.Caps = tc.oldCaps
			child, err := o.Run()
			if err != nil {
				t.Fatal(err)
			}
			if child.Mover != nil {
				t.Fatal("a session phase with a peer that cannot move sessions")
			}
			select {
			case err := <-child.Exited:
				if !strings.Contains(err.Error(), "exit status 0") {
					t.Fatalf("child: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the new process waits for sessions that never come")
			}
			if out.String() != "sessions=false\n" {
				t.Fatalf("child printed %q", out.String())
			}
		})
	}
}

// closeOn closes ch at the first write containing word.
type closeOn struct {
	word string
	ch   chan struct{}
	once sync.Once
}

func (w *closeOn) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(w.word)) {
		w.once.Do(func() { close(w.ch) })
	}
	return len(p), nil
}

// TestOfferCancel: closing Cancel calls the hand-over off whatever it
// waits for (the new process to connect, its Ready): the new process is
// killed and Run returns ErrCalledOff at once, not at the timeout.
func TestOfferCancel(t *testing.T) {
	t.Run("before it connects", func(t *testing.T) {
		o, _ := offerOf(t, "")
		o.Binary, o.Args = "/bin/sleep", []string{"30"}
		cancel := make(chan struct{})
		close(cancel)
		o.Cancel = cancel
		start := time.Now()
		if _, err := o.Run(); !errors.Is(err, ErrCalledOff) {
			t.Fatalf("Run = %v, want ErrCalledOff", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %s", d)
		}
	})
	t.Run("before its Ready", func(t *testing.T) {
		o, ln := offerOf(t, "stall")
		w := &closeOn{word: "taken", ch: make(chan struct{})}
		o.Stdout, o.Cancel = w, w.ch
		start := time.Now()
		if _, err := o.Run(); !errors.Is(err, ErrCalledOff) {
			t.Fatalf("Run = %v, want ErrCalledOff", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %s", d)
		}
		if !nonblocking(t, ln) {
			t.Fatal("old listener left blocking")
		}
	})
}
