package e2e

import (
	"io"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMDrains: tether stops accepting, answers the long poll in
// flight, tells its WebSocket clients 1001 spread over the drain, and exits 0.
func TestSIGTERMDrains(t *testing.T) {
	n1, n2 := startNode(t, node1, 2*time.Second), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2}, append(healthOff, "--drain-timeout", "4s")...)
	sessions := openSessions(t, tt.addr, node1, 6)
	sessions = append(sessions, openSessions(t, tt.addr, node2, 6)...)

	poll := dialRaw(t, tt.addr)
	if _, err := io.WriteString(poll, get("/cobrowse/poll?session=drain&role=agent", "Cookie: gcbSessionServer="+node1+"\r\n")); err != nil {
		t.Fatal(err)
	}
	if !waitFor(3*time.Second, func() bool { return n1.Stats().Polls == 1 }) {
		t.Fatal("the poll never reached the node")
	}
	sent := time.Now()
	if err := tt.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	codes, at := awaitClose(t, sessions, 6*time.Second)
	first, last := at[0], at[0]
	for i, c := range codes {
		if c != 1001 {
			t.Fatalf("session %d closed with %d, want 1001", i, c)
		}
		first = minTime(first, at[i])
		last = maxTime(last, at[i])
	}
	// Spread over the first half of the 4s drain: neither all at once nor late.
	if spread := last.Sub(first); spread < 500*time.Millisecond || last.Sub(sent) > 3*time.Second {
		t.Fatalf("told from %v to %v after SIGTERM, want spread over ~2s", first.Sub(sent), last.Sub(sent))
	}
	r := poll.readResponse(t, false)
	if r.status != 204 && r.status != 200 {
		t.Fatalf("long poll in flight: status %d, want its answer (204 after the node's wait)", r.status)
	}
	if r.get("Connection") != "close" {
		t.Fatalf("answer during the drain lacks Connection: close")
	}
	select {
	case <-tt.exited:
	case <-time.After(6 * time.Second):
		t.Fatal("tether did not exit within the drain timeout")
	}
	if st := tt.cmd.ProcessState; st == nil || !st.Success() {
		t.Fatalf("exit status %v, want 0", st)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
