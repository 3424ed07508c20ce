package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// echoes sends one message on each WebSocket and checks its echo: the
// session is alive and on the same connection.
func echoes(t *testing.T, what string, wss ...*websocket.Conn) {
	t.Helper()
	for i, ws := range wss {
		msg := fmt.Sprintf("%s #%d", what, i)
		ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatalf("%s: session %d: write: %v", what, i, err)
		}
		if _, got, err := ws.ReadMessage(); err != nil || string(got) != msg {
			t.Fatalf("%s: session %d: read %q, %v", what, i, got, err)
		}
	}
}

// idleConnWaiting waits, up to 5 s, for a client connection of tether's
// waiting idle for its next request (after the moment it reads on for a
// next one at once), in its goroutine profile; tether must run with
// --pprof.
func idleConnWaiting(t *testing.T, admin string) bool {
	t.Helper()
	return waitFor(5*time.Second, func() bool {
		resp, err := http.Get("http://" + admin + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		for _, stack := range strings.Split(string(b), "\n\n") {
			if strings.Contains(stack, "proxy.(*conn).run+0x") && strings.Contains(stack, "sockio.WaitReadable+0x") && !strings.Contains(stack, "serveBurst") {
				return true
			}
		}
		return false
	})
}

// predecessors returns the older processes in a tether's /status.
func predecessors(t *testing.T, admin string) []struct {
	PID         int   `json:"pid"`
	Sessions    int64 `json:"sessions"`
	TLSSessions int64 `json:"tls_sessions"`
} {
	t.Helper()
	_, _, body := adminReq(t, "GET", "http://"+admin+"/status", nil, "")
	var st struct {
		Predecessors []struct {
			PID         int   `json:"pid"`
			Sessions    int64 `json:"sessions"`
			TLSSessions int64 `json:"tls_sessions"`
		} `json:"predecessors"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v: %s", err, body)
	}
	return st.Predecessors
}

// TestUpgradeMovesSessions: plain WebSocket sessions and an idle keep-alive
// connection move to the new process on SIGUSR2 (messages go on on the
// same connections, nothing is closed); a wss session stays with the old
// process, which the new one shows in /status and /metrics, until it ends;
// then the old process exits and leaves the list. Its keep-alive
// connection waits on a goroutine (--http-loops -1), the wait a hand-over
// wakes; TestUpgradeKeepsSessions moves idle connections off the http
// loops, the default.
func TestUpgradeMovesSessions(t *testing.T) {
	n1 := startNode(t, node1, 0)
	tlsAddr := freeAddr(t)
	a := startUpgradable(t, []*testNode{n1}, "--tls-listen", tlsAddr, "--tls-self-signed", "--drain-timeout", "3s", "--pprof", "--http-loops", "-1")
	var plain []*websocket.Conn
	for i := range 3 {
		ws, _ := dialWS(t, a.addr, fmt.Sprintf("session=mv%d&role=echo", i), "")
		plain = append(plain, ws)
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	wss, _, err := d.Dial("wss://"+tlsAddr+"/cobrowse/ws?session=stay&role=echo", http.Header{})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer wss.Close()
	echoes(t, "before", append(plain, wss)...)
	idle := dialRaw(t, a.addr)
	if r := idle.do(t, get("/cobrowse/x", "")); r.status != 200 {
		t.Fatalf("keep-alive request before: %d", r.status)
	}
	if !idleConnWaiting(t, a.adminAddr(t)) {
		t.Fatal("the keep-alive connection did not go idle")
	}

	oldPID := a.cmd.Process.Pid
	if err := a.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	newPID := a.waitNewPID(t, 1)
	if !waitFor(10*time.Second, func() bool { return len(a.logLines(handedOver)) == 1 }) {
		t.Fatal("the old process did not log the hand-over")
	}
	done := a.logLines(handedOver)[0]
	if num(done, "sessions_handed") != 3 || num(done, "conns_handed") != 1 || num(done, "tls_sessions_kept") != 1 || num(done, "sessions_kept") != 1 || int(num(done, "new_pid")) != newPID {
		t.Fatalf("hand-over line %v", done)
	}
	taken := a.logLines("hand-over: sessions taken")
	if len(taken) != 1 || num(taken[0], "sessions") != 3 || num(taken[0], "conns") != 1 || int(num(taken[0], "from_pid")) != oldPID || taken[0]["verdict"] != "committed" {
		t.Fatalf("sessions taken: %v", taken)
	}
	echoes(t, "after", append(plain, wss)...)
	if r := idle.do(t, get("/cobrowse/x", "")); r.status != 200 {
		t.Fatalf("keep-alive request after: %d", r.status)
	}

	// The new process shows the old one, which keeps the wss session.
	admin := a.adminAddr(t)
	if !waitFor(5*time.Second, func() bool {
		p := predecessors(t, admin)
		return len(p) == 1 && p[0].PID == oldPID && p[0].Sessions == 1 && p[0].TLSSessions == 1
	}) {
		_, _, body := adminReq(t, "GET", "http://"+admin+"/status", nil, "")
		t.Fatalf("/status predecessors %+v, want pid %d with one TLS session: %s", predecessors(t, admin), oldPID, body)
	}
	_, body := adminDo(t, "GET", "http://"+admin+"/metrics", "", nil)
	if v := metricValue(body, fmt.Sprintf(`tether_predecessor_sessions{pid="%d"}`, oldPID)); v != 1 {
		t.Fatalf("tether_predecessor_sessions of %d = %v", oldPID, v)
	}
	if !alive(oldPID) {
		t.Fatal("the old process exited with a wss session open")
	}
	closeWS(t, wss)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the old process did not exit once its last session ended")
	}
	if st := a.cmd.ProcessState; !st.Success() {
		t.Fatalf("old process exit status %v", st)
	}
	if !waitFor(5*time.Second, func() bool { return len(predecessors(t, admin)) == 0 }) {
		t.Fatalf("/status still lists %+v", predecessors(t, admin))
	}
	echoes(t, "after the old process exited", plain...)
	for _, ws := range plain {
		closeWS(t, ws)
	}
}

// TestUpgradeSessionsNewCrashes: the new process dies after it received
// the sessions, before it answered: the old process keeps every session
// running on the same connections, nothing closed, and logs why.
func TestUpgradeSessionsNewCrashes(t *testing.T) {
	t.Setenv("TETHER_HANDOVER_TEST_CRASH", "after-sessions") // read only by a process a hand-over started
	n1 := startNode(t, node1, 0)
	a := startUpgradable(t, []*testNode{n1}, "--drain-timeout", "3s")
	var wss []*websocket.Conn
	for i := range 3 {
		ws, _ := dialWS(t, a.addr, fmt.Sprintf("session=crash%d&role=echo", i), "")
		wss = append(wss, ws)
	}
	echoes(t, "before", wss...)
	if err := a.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	newPID := a.waitNewPID(t, 1)
	const kept = "hand-over: sessions not handed; this process keeps them"
	if !waitFor(15*time.Second, func() bool { return len(a.logLines(kept)) == 1 }) {
		t.Fatal("the old process did not log the failed move")
	}
	if l := a.logLines(kept)[0]; l["level"] != "warn" || l["error"] == "" || int(num(l, "new_pid")) != newPID {
		t.Fatalf("failure line %v", l)
	}
	if !waitFor(5*time.Second, func() bool { return !alive(newPID) }) {
		t.Fatal("the new process did not crash")
	}
	echoes(t, "after", wss...)
	if !alive(a.cmd.Process.Pid) {
		t.Fatal("the old process exited")
	}
	if done := a.logLines(handedOver); len(done) != 1 || num(done[0], "sessions_handed") != 0 || num(done[0], "sessions_kept") != 3 {
		t.Fatalf("hand-over line %v", done)
	}
	echoes(t, "later", wss...)
	for _, ws := range wss {
		closeWS(t, ws)
	}
	if strings.Contains(a.stderr.String(), `"level":"error"`) {
		t.Logf("error lines:\n%s", a.stderr.String())
	}
}

// TestUpgradeTwiceWithTLSKept: a second SIGUSR2, to the new process, while
// the first still holds a wss session: plain sessions move again, and the
// third process lists both older ones (the second relays the first's
// report); when the wss session ends, the first exits, then the second, and
// the list empties.
func TestUpgradeTwiceWithTLSKept(t *testing.T) {
	n1 := startNode(t, node1, 0)
	tlsAddr := freeAddr(t)
	a := startUpgradable(t, []*testNode{n1}, "--tls-listen", tlsAddr, "--tls-self-signed", "--drain-timeout", "3s")
	plain, _ := dialWS(t, a.addr, "session=twice&role=echo", "")
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	wss, _, err := d.Dial("wss://"+tlsAddr+"/cobrowse/ws?session=stays&role=echo", http.Header{})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer wss.Close()
	echoes(t, "before", plain, wss)

	firstPID := a.cmd.Process.Pid
	if err := a.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	secondPID := a.waitNewPID(t, 1)
	if !waitFor(10*time.Second, func() bool { return len(a.logLines("hand-over: sessions taken")) == 1 }) {
		t.Fatal("the second process took no sessions")
	}
	echoes(t, "after the first hand-over", plain, wss)
	if err := syscall.Kill(secondPID, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	thirdPID := a.waitNewPID(t, 2)
	if !waitFor(10*time.Second, func() bool { return len(a.logLines("hand-over: sessions taken")) == 2 }) {
		t.Fatal("the third process took no sessions")
	}
	if l := a.logLines("hand-over: sessions taken")[1]; num(l, "sessions") != 1 || int(num(l, "from_pid")) != secondPID || int(num(l, "pid")) != thirdPID {
		t.Fatalf("second hand-over: %v", l)
	}
	echoes(t, "after the second hand-over", plain, wss)

	admin := a.adminAddr(t)
	if !waitFor(5*time.Second, func() bool {
		p := predecessors(t, admin)
		return len(p) == 2 && p[0].PID == secondPID && p[0].Sessions == 0 && p[1].PID == firstPID && p[1].TLSSessions == 1
	}) {
		t.Fatalf("/status predecessors %+v, want %d (nothing) then %d (one TLS session)", predecessors(t, admin), secondPID, firstPID)
	}
	closeWS(t, wss)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the first process did not exit once its wss session ended")
	}
	if !waitFor(10*time.Second, func() bool { return !alive(secondPID) }) {
		t.Fatal("the second process did not exit after the first")
	}
	if !waitFor(5*time.Second, func() bool { return len(predecessors(t, admin)) == 0 }) {
		t.Fatalf("/status still lists %+v", predecessors(t, admin))
	}
	echoes(t, "with the third process alone", plain)
	closeWS(t, plain)
}

// TestStatusPageShowsPredecessors: the new process's status page shows the
// old one while it keeps a wss session, and its live script hides the
// table once the old process has exited.
func TestStatusPageShowsPredecessors(t *testing.T) {
	n1 := startNode(t, node1, 0)
	tlsAddr := freeAddr(t)
	a := startUpgradable(t, []*testNode{n1}, "--tls-listen", tlsAddr, "--tls-self-signed", "--drain-timeout", "3s")
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	wss, _, err := d.Dial("wss://"+tlsAddr+"/cobrowse/ws?session=page&role=echo", http.Header{})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer wss.Close()
	echoes(t, "before", wss)
	oldPID := a.cmd.Process.Pid
	if err := a.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	a.waitNewPID(t, 1)
	admin := a.adminAddr(t)
	if !waitFor(10*time.Second, func() bool { return len(predecessors(t, admin)) == 1 }) {
		t.Fatal("the new process does not list the old one")
	}
	page := "http://" + admin + "/status?format=html"
	ctx := openPage(t, page)
	dom := waitPage(t, ctx, page, fmt.Sprintf(`!document.getElementById("preds-box").hidden && document.querySelector("#preds td")?.textContent === "%d"`, oldPID))
	if !strings.Contains(dom, "older processes still serving") {
		t.Fatalf("no table of older processes:\n%s", tail(dom, 3000))
	}
	closeWS(t, wss)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the old process did not exit")
	}
	waitPage(t, ctx, page, `document.getElementById("preds-box").hidden && document.querySelectorAll("#preds tr").length === 0`)
}
