package handover

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Offer starts a new process and hands it the state of this one. Its zero
// value is not usable: Binary, State and Timeout are required.
type Offer struct {
	// Binary is the path of the new binary; Args its arguments (without
	// the program name).
	Binary string
	Args   []string
	// Stdout and Stderr are the new process's; nil means /dev/null.
	Stdout, Stderr io.Writer
	// Timeout bounds the whole hand-over, from the start of the new
	// process to its Ready.
	Timeout time.Duration
	// State is what is handed over; its files stay the caller's.
	State State
	// Refused, when set, is told of each connection to the hand-over
	// socket refused for its credentials.
	Refused func(error)
	// Cancel, when closed before Run returns, calls the hand-over off: the
	// new process is killed and Run returns ErrCalledOff. nil: never.
	Cancel <-chan struct{}
}

// ErrCalledOff is Run's error when Cancel was closed first.
var ErrCalledOff = errors.New("handover: called off")

// Child is the new process after a successful hand-over.
type Child struct {
	Hello               // as it introduced itself
	Exited <-chan error // receives how it ended; the process is reaped
	// Mover is the session phase, on the same connection, when both
	// Hellos name CapSessions; nil otherwise (a binary that hands over
	// listeners and node states only): the caller then drains.
	Mover *Mover
}

// Run starts the new process with the address of a fresh hand-over
// socket in its environment (EnvAddr), accepts only that process under
// this process's UID, sends State and waits for the new process's Ready.
// On any failure (the process cannot start, exits, breaks the stream or
// takes longer than Timeout) the new process is killed and the error says
// why; nothing of State is closed, so the caller goes on serving.
func (o *Offer) Run() (*Child, error) {
	deadline := time.Now().Add(o.Timeout)
	ln, addr, err := listenAbstract()
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	ln.SetDeadline(deadline)
	if testHookListening != nil {
		testHookListening(addr)
	}

	cmd := exec.Command(o.Binary, o.Args...)
	cmd.Env = append(withoutEnv(os.Environ(), EnvAddr), EnvAddr+"="+addr)
	cmd.Stdout, cmd.Stderr = o.Stdout, o.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.Binary, err)
	}
	exited := make(chan error, 1)
	go waitChild(cmd, exited)

	// A process that exits before it connects wakes Accept.
	var mu sync.Mutex
	var exitErr error
	stop, watched := make(chan struct{}), make(chan struct{})
	go watchChild(exited, stop, watched, func(err error) {
		mu.Lock()
		exitErr = err
		mu.Unlock()
		ln.Close()
	})
	killed := make(chan bool, 1)
	go cancelChild(o.Cancel, stop, cmd.Process, killed)
	hello, mover, err := o.run(ln, cmd.Process.Pid, deadline)
	if err != nil {
		// A stream that broke is most often a process that exited: give
		// its exit a moment to arrive, so the error names it.
		select {
		case <-watched:
		case <-time.After(200 * time.Millisecond):
		}
	}
	close(stop)
	<-watched
	if <-killed {
		err = fmt.Errorf("new process pid %d killed: %w", cmd.Process.Pid, ErrCalledOff)
	}
	mu.Lock()
	switch {
	case errors.Is(err, ErrCalledOff):
	case err != nil && errors.Is(err, net.ErrClosed): // Accept woken by the exit
		err = fmt.Errorf("new process pid %d exited: %v", cmd.Process.Pid, exitStatus(exitErr))
	case err != nil && exitErr != nil:
		err = fmt.Errorf("new process pid %d exited: %v; %w", cmd.Process.Pid, exitStatus(exitErr), err)
	case exitErr != nil: // after its Ready
		err = fmt.Errorf("new process pid %d exited: %v", cmd.Process.Pid, exitStatus(exitErr))
	}
	mu.Unlock()
	if err != nil {
		if mover != nil {
			mover.Close()
		}
		cmd.Process.Kill()
		return nil, err
	}
	// watchChild did not take the exit: pass it on.
	out := make(chan error, 1)
	go relayExit(exited, out)
	return &Child{Hello: hello, Exited: out, Mover: mover}, nil
}

// run accepts the new process and speaks the old side of the protocol.
// When both ends can move sessions, the connection stays open after Ready,
// as the Mover returned.
func (o *Offer) run(ln *net.UnixListener, pid int, deadline time.Time) (Hello, *Mover, error) {
	hello, c, w, r, err := o.exchange(ln, pid, deadline)
	if c == nil {
		return hello, nil, err
	}
	if err != nil || !hello.Can(CapSessions) || !o.State.From.Can(CapSessions) {
		c.Close()
		return hello, nil, err
	}
	return hello, newMover(c, w, r), nil
}

// exchange accepts the new process and runs the hand-over up to its Ready.
// The connection it returns (nil when none was accepted) is the caller's
// to close.
func (o *Offer) exchange(ln *net.UnixListener, pid int, deadline time.Time) (Hello, *net.UnixConn, *Writer, *Reader, error) {
	peer := Peer{UID: uint32(os.Getuid()), PID: pid}
	var c *net.UnixConn
	for c == nil {
		nc, err := ln.AcceptUnix()
		if err != nil {
			return Hello{}, nil, nil, nil, fmt.Errorf("wait for the new process: %w", err)
		}
		cred, err := PeerCred(nc)
		if err == nil {
			err = peer.Check(cred)
		}
		if err != nil {
			nc.Close()
			if o.Refused != nil {
				o.Refused(err)
			}
			continue
		}
		c = nc
	}
	c.SetDeadline(deadline)
	w, r := NewWriter(c), NewReader(c, 0)
	hello, err := o.send(w, r)
	return hello, c, w, r, err
}

// send introduces this process, sends State and waits for Ready.
func (o *Offer) send(w *Writer, r *Reader) (Hello, error) {
	if err := writeJSON(w, TypeHello, o.State.From); err != nil {
		return Hello{}, err
	}
	rec, err := expect(r, TypeHello)
	if err != nil {
		return Hello{}, err
	}
	var hello Hello
	err = readJSON(&rec, &hello)
	rec.Close()
	if err != nil {
		return Hello{}, err
	}
	for _, l := range o.State.Listeners {
		if err := writeJSON(w, TypeListener, l, l.File); err != nil {
			return hello, err
		}
	}
	if err := writeJSON(w, TypeNodes, o.State.Nodes); err != nil {
		return hello, err
	}
	if err := w.Write(TypeEnd, nil); err != nil {
		return hello, err
	}
	rec, err = expect(r, TypeReady)
	rec.Close()
	if err != nil {
		return hello, fmt.Errorf("wait for ready: %w", err)
	}
	return hello, nil
}

// testHookListening, when set, is told the hand-over socket's address.
var testHookListening func(addr string)

// listenAbstract listens on a fresh unix socket in the abstract namespace
// (nothing on disk to clean up); only the credential check decides who
// may use it.
func listenAbstract() (*net.UnixListener, string, error) {
	if runtime.GOOS != "linux" {
		return nil, "", errors.New("handover: needs Linux (abstract unix sockets, SO_PEERCRED)")
	}
	var b [8]byte
	rand.Read(b[:])
	addr := fmt.Sprintf("@tether-handover-%d-%s", os.Getpid(), hex.EncodeToString(b[:]))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		return nil, "", fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, addr, nil
}

// waitChild reaps cmd and reports how it ended.
func waitChild(cmd *exec.Cmd, exited chan<- error) {
	err := cmd.Wait()
	if err == nil {
		err = errors.New("exit status 0")
	}
	exited <- err
}

// watchChild calls gone when the new process exits before stop is closed.
func watchChild(exited <-chan error, stop <-chan struct{}, done chan<- struct{}, gone func(error)) {
	defer close(done)
	select {
	case err := <-exited:
		gone(err)
	case <-stop:
	}
}

// cancelChild kills the new process when cancel is closed before stop
// (whatever the hand-over waits for then ends), and reports whether it did.
func cancelChild(cancel, stop <-chan struct{}, p *os.Process, killed chan<- bool) {
	select {
	case <-cancel:
		p.Kill()
		killed <- true
	case <-stop:
		killed <- false
	}
}

// relayExit passes on the new process's end, after a successful hand-over.
func relayExit(exited <-chan error, out chan<- error) { out <- <-exited }

// exitStatus describes how the new process ended.
func exitStatus(err error) string {
	if err == nil {
		return "before its hand-over ended"
	}
	return err.Error()
}

// withoutEnv returns env without the variable name.
func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
