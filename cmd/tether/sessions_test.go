//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tether-lb/tether/handover"
	"github.com/tether-lb/tether/proxy"
	"golang.org/x/sys/unix"
)

// steps records the order of calls on the fakes.
type steps []string

func (s *steps) add(step string) { *s = append(*s, step) }

// fakeHandoff is a handoff of fixed sessions and connections.
type fakeHandoff struct {
	log      *steps
	sessions []proxy.HandedSession
	conns    []proxy.HandedConn
}

func (h *fakeHandoff) Sessions() []proxy.HandedSession { return h.sessions }
func (h *fakeHandoff) Conns() []proxy.HandedConn       { return h.conns }
func (h *fakeHandoff) Commit()                         { h.log.add("handoff.Commit") }
func (h *fakeHandoff) Abort()                          { h.log.add("handoff.Abort") }

// fakeMover fails at the step named fail.
type fakeMover struct {
	log              *steps
	fail             string
	gotSession, gotC []handover.Item
}

func (m *fakeMover) step(name string) error {
	m.log.add("mover." + name)
	if m.fail == name {
		return fmt.Errorf("%s: broken pipe", name)
	}
	return nil
}
func (m *fakeMover) SetDeadline(time.Time) error { return nil }
func (m *fakeMover) Send(s, c []handover.Item) error {
	m.gotSession, m.gotC = s, c
	return m.step("Send")
}
func (m *fakeMover) Await() error           { return m.step("Await") }
func (m *fakeMover) Commit() error          { return m.step("Commit") }
func (m *fakeMover) Abort(why string) error { return m.step("Abort") }

// TestMoveSessions: the old process commits only after the new one's Taken
// and its own Commit sent; a failure at any step (the connection lost mid-
// batch, the new process's refusal, a Commit that does not go out) tells
// the new process so first and then takes every item back (Abort), never
// committing.
func TestMoveSessions(t *testing.T) {
	cases := []struct {
		fail string
		want string
	}{
		{"", "mover.Send mover.Await mover.Commit handoff.Commit"},
		{"Send", "mover.Send mover.Abort handoff.Abort"},
		{"Await", "mover.Send mover.Await mover.Abort handoff.Abort"},
		{"Commit", "mover.Send mover.Await mover.Commit mover.Abort handoff.Abort"},
	}
	for _, tc := range cases {
		t.Run("fail at "+tc.fail, func(t *testing.T) {
			var log steps
			h := &fakeHandoff{log: &log,
				sessions: []proxy.HandedSession{{Client: 7, Node: 8, Meta: proxy.SessionMeta{Node: "CB_Server_1", Remote: "192.0.2.1", Status: 101}}},
				conns:    []proxy.HandedConn{{FD: 9, Meta: proxy.ConnMeta{Remote: "192.0.2.2", Served: 3}}},
			}
			m := &fakeMover{log: &log, fail: tc.fail}
			mv := moveSessions(h, m, time.Second)
			if got := strings.Join(log, " "); got != tc.want {
				t.Fatalf("steps %q, want %q", got, tc.want)
			}
			if (mv.err == nil) != (tc.fail == "") {
				t.Fatalf("moved %+v", mv)
			}
			if tc.fail == "" && (mv.sessions != 1 || mv.conns != 1) {
				t.Fatalf("moved %+v", mv)
			}
			if len(m.gotSession) != 1 || fmt.Sprint(m.gotSession[0].FDs) != "[7 8]" || len(m.gotC) != 1 || fmt.Sprint(m.gotC[0].FDs) != "[9]" {
				t.Fatalf("sent %+v %+v", m.gotSession, m.gotC)
			}
			var meta proxy.SessionMeta
			if err := json.Unmarshal(m.gotSession[0].Meta, &meta); err != nil || meta.Node != "CB_Server_1" || meta.Status != 101 {
				t.Fatalf("session description %s: %v", m.gotSession[0].Meta, err)
			}
		})
	}
}

// fakeTaker is the new process's end with scripted answers.
type fakeTaker struct {
	log        *steps
	received   *handover.Received
	receiveErr error
	verdict    handover.Verdict
}

func (c *fakeTaker) Receive(time.Time, int) (*handover.Received, error) {
	c.log.add("Receive")
	return c.received, c.receiveErr
}
func (c *fakeTaker) Taken() error            { c.log.add("Taken"); return nil }
func (c *fakeTaker) Refuse(why string) error { c.log.add("Refuse"); return nil }
func (c *fakeTaker) AwaitCommit(time.Time) (handover.Verdict, error) {
	c.log.add("AwaitCommit")
	if c.verdict == handover.Aborted {
		return c.verdict, errors.New("old process: client gone")
	}
	return c.verdict, nil
}

// fakeAdopter records what it adopts; fail refuses.
type fakeAdopter struct {
	log      *steps
	fail     bool
	sessions []proxy.HandedSession
}

func (a *fakeAdopter) Adopt(s []proxy.HandedSession, c []proxy.HandedConn) (adopted, error) {
	a.log.add("Adopt")
	a.sessions = s
	if a.fail {
		return nil, errors.New("adopt: no splice loops")
	}
	return &fakeAdopted{log: a.log, n: len(s), c: len(c)}, nil
}

type fakeAdopted struct {
	log  *steps
	n, c int
}

func (a *fakeAdopted) Start()                        { a.log.add("Start") }
func (a *fakeAdopted) Drop()                         { a.log.add("Drop") }
func (a *fakeAdopted) Counts() (sessions, conns int) { return a.n, a.c }

// TestAdoptSessions: the new process runs what it adopted on Commit, or
// when the old process died without a word; it drops it on the old one's
// Abort; it refuses (the old process keeps everything) when receiving,
// decoding or adopting fails, closing what it received.
func TestAdoptSessions(t *testing.T) {
	meta, _ := json.Marshal(proxy.SessionMeta{Node: "CB_Server_1", Status: 101})
	cases := []struct {
		name       string
		meta       string
		receiveErr error
		adoptFails bool
		verdict    handover.Verdict
		want       string
	}{
		{"commit", string(meta), nil, false, handover.Committed, "Receive Adopt Taken AwaitCommit Start"},
		{"old process died", string(meta), nil, false, handover.Orphaned, "Receive Adopt Taken AwaitCommit Start"},
		{"old process aborts", string(meta), nil, false, handover.Aborted, "Receive Adopt Taken AwaitCommit Drop"},
		{"stream broken", "", errors.New("receive sessions: unexpected EOF"), false, 0, "Receive Refuse"},
		{"adopt fails", string(meta), nil, true, 0, "Receive Adopt Refuse"},
		{"description does not decode", `"not a session"`, nil, false, 0, "Receive Refuse"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var log steps
			var got *handover.Received
			var fds [2]int
			if tc.receiveErr == nil {
				if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
					t.Fatal(err)
				}
				got = &handover.Received{Sessions: []handover.Item{{Meta: json.RawMessage(tc.meta), FDs: []int{fds[0], fds[1]}}}}
			}
			c := &fakeTaker{log: &log, received: got, receiveErr: tc.receiveErr, verdict: tc.verdict}
			a := &fakeAdopter{log: &log, fail: tc.adoptFails}
			ad := adoptSessions(c, a, time.Second, time.Second, 0)
			if s := strings.Join(log, " "); s != tc.want {
				t.Fatalf("steps %q, want %q", s, tc.want)
			}
			runs := strings.HasSuffix(tc.want, "Start")
			if (ad.err == nil) != runs {
				t.Fatalf("adoption %+v", ad)
			}
			if runs && (ad.sessions != 1 || ad.verdict != tc.verdict) {
				t.Fatalf("adoption %+v", ad)
			}
			if strings.Contains(tc.want, "Adopt") {
				if len(a.sessions) != 1 || a.sessions[0].Meta.Node != "CB_Server_1" || a.sessions[0].Client != fds[0] || a.sessions[0].Node != fds[1] {
					t.Fatalf("adopted %+v", a.sessions)
				}
				unix.Close(fds[0]) // the fake adopter does not own them
				unix.Close(fds[1])
			} else if tc.receiveErr == nil {
				// Refused before Adopt: the descriptors received were closed.
				for _, fd := range fds {
					if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
						t.Fatalf("descriptor %d still open after a refusal", fd)
					}
				}
			}
		})
	}
}
