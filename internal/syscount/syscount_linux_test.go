//go:build linux

package syscount

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// calls is the cheap system calls each test enters; slack bounds the
// other threads' calls (the runtime's sysmon, the GC, the test's own
// goroutines) over the few milliseconds it takes.
const (
	calls = 10000
	slack = calls / 10
)

// open is an open Counter, or the test skipped where perf events are not
// allowed.
func open(t *testing.T) *Counter {
	t.Helper()
	c, err := Open()
	if err != nil {
		t.Skipf("system calls cannot be counted here: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// getpids enters calls getpid system calls.
func getpids() {
	for range calls {
		unix.Getpid()
	}
}

// counted is the count's growth over f, checked to be calls within slack.
func counted(t *testing.T, c *Counter, f func()) {
	t.Helper()
	before, err := c.Count()
	if err != nil {
		t.Fatal(err)
	}
	f()
	after, err := c.Count()
	if err != nil {
		t.Fatal(err)
	}
	if n := after - before; n < calls || n > calls+slack {
		t.Fatalf("counted %d system calls, want %d to %d", n, calls, calls+slack)
	}
}

// TestCountsThisThread: getpids on a thread that existed at Open.
func TestCountsThisThread(t *testing.T) {
	c := open(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	counted(t, c, getpids)
}

// TestCountsNewThread: getpids on a thread the runtime created after Open,
// counted through the counter its creator's thread passed on.
func TestCountsNewThread(t *testing.T) {
	old := threadsOf([]int{os.Getpid()})
	c := open(t)
	// Goroutines locked to their threads and parked hold them, so the
	// runtime has to start new ones: take threads until one is new.
	release := make(chan struct{})
	defer close(release)
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("no new thread after 1000 locked goroutines")
		}
		h := &holder{tid: make(chan int), work: make(chan struct{}), done: make(chan struct{})}
		go h.hold(release)
		if !old[<-h.tid] {
			counted(t, c, func() {
				h.work <- struct{}{}
				<-h.done
			})
			return
		}
	}
}

// holder is a goroutine locked to its thread.
type holder struct {
	tid  chan int      // its thread's id, sent once locked
	work chan struct{} // getpids on its thread
	done chan struct{} // getpids done
}

// hold locks the goroutine to its thread, sends the thread's id and parks
// until told to work or released.
func (h *holder) hold(release <-chan struct{}) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	h.tid <- unix.Gettid()
	select {
	case <-h.work:
		getpids()
		close(h.done)
	case <-release:
	}
}

func TestThreadsOf(t *testing.T) {
	// This test process: the Go runtime runs several threads.
	if got := threadsOf([]int{os.Getpid()}); !got[os.Getpid()] || len(got) < 2 {
		t.Errorf("threads of this process: %v", got)
	}
	if got := threadsOf([]int{-1}); len(got) != 0 {
		t.Errorf("threads of no process: %v", got)
	}
}
