package main

// The session phase of a hand-over (SIGUSR2), after the new process's
// Ready, when both binaries can move sessions: the old process hands its
// plain WebSocket sessions and idle keep-alive connections over
// (moveSessions), the new one adopts them (adoptSessions); the old one
// then runs what stayed until it ends (retire), reporting its figures to
// the new one every second (relay shows them in /status and /metrics).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/handover"
	"github.com/tether-lb/tether/proxy"
)

// envTestCrash is a test-only switch of the new process, for the end-to-end
// fault tests: "after-sessions" makes it exit with status 3 once it has
// received the old process's sessions, before it answers;
// "pause-after-sessions" makes it log "test hook: paused" and wait two
// seconds there (a node can die while the sessions are in neither
// process's hands). Nothing else reads it; operators never set it.
const envTestCrash = "TETHER_HANDOVER_TEST_CRASH"

// handoff is what the old process hands over (*proxy.Handoff).
type handoff interface {
	Sessions() []proxy.HandedSession
	Conns() []proxy.HandedConn
	Commit()
	Abort()
}

// mover is the old process's end of the session phase (*handover.Mover).
type mover interface {
	SetDeadline(time.Time) error
	Send(sessions, conns []handover.Item) error
	Await() error
	Commit() error
	Abort(reason string) error
}

// moved is what a session phase handed over, for the log.
type moved struct {
	sessions, conns int
	err             error // why nothing moved; nil when committed
}

// moveSessions hands h's sessions and connections to the new process on
// m, within timeout. On the new process's Taken it commits (h lets them
// go); on anything else (its refusal, a broken stream, the timeout, a
// description that does not encode) it tells the new process so and takes
// everything back (h.Abort): this process goes on running them.
func moveSessions(h handoff, m mover, timeout time.Duration) moved {
	sessions, conns, err := handItems(h)
	if err == nil {
		m.SetDeadline(time.Now().Add(timeout))
		err = m.Send(sessions, conns)
	}
	if err == nil {
		err = m.Await()
	}
	if err == nil {
		// Commit goes out before this process lets go: had the new
		// process not heard it, it would close its copies.
		if err = m.Commit(); err != nil {
			err = fmt.Errorf("send commit: %w", err)
		}
	}
	if err != nil {
		m.Abort(err.Error()) // first: the new process must not run what this one takes back
		h.Abort()
		return moved{err: err}
	}
	h.Commit()
	return moved{sessions: len(sessions), conns: len(conns)}
}

// handItems describes h's sessions and connections for the stream.
func handItems(h handoff) (sessions, conns []handover.Item, err error) {
	for _, s := range h.Sessions() {
		b, err := json.Marshal(s.Meta)
		if err != nil {
			return nil, nil, fmt.Errorf("encode session of %s: %w", s.Meta.Node, err)
		}
		sessions = append(sessions, handover.Item{Meta: b, FDs: []int{s.Client, s.Node}})
	}
	for _, c := range h.Conns() {
		b, err := json.Marshal(c.Meta)
		if err != nil {
			return nil, nil, fmt.Errorf("encode connection of %s: %w", c.Meta.Remote, err)
		}
		conns = append(conns, handover.Item{Meta: b, FDs: []int{c.FD}})
	}
	return sessions, conns, nil
}

// handSessions runs the old process's side of the session phase on m, just
// after StopAccepting, and logs how it ended: the PIDs and versions of both
// processes, what moved and what stays.
func handSessions(srv *proxy.Server, m *handover.Mover, child handover.Hello, o upgradeOpts, log zerolog.Logger) {
	began := time.Now()
	mv := moveSessions(srv.HandOff(), m, o.timeout)
	took := time.Since(began) // frozen until committed: the pause a handed session saw here
	if mv.err != nil {
		log.Warn().Err(mv.err).Int("pid", os.Getpid()).Int("new_pid", child.PID).Msg("hand-over: sessions not handed; this process keeps them")
	}
	occ := srv.Occupancy()
	log.Info().Int("pid", os.Getpid()).Str("version", version()).Int("new_pid", child.PID).Str("new_version", child.Version).
		Int("sessions_handed", mv.sessions).Int("conns_handed", mv.conns).
		Int64("sessions_kept", occ.Sessions).Int64("tls_sessions_kept", occ.TLSSessions).Int64("conns_kept", occ.Conns).Int64("in_flight", occ.InFlight).
		Dur("dur", took).Dur("hard_stop", o.hardStop).Msg("hand-over done: the new process serves; retiring")
}

// takeSessions runs the new process's side of the session phase on c and
// logs how it ended. maxConns (--max-conns; <= 0: none) bounds the items
// taken.
func takeSessions(c *handover.Conn, srv *proxy.Server, o upgradeOpts, maxConns int, log zerolog.Logger) {
	ad := adoptSessions(c, serverAdopter{srv}, o.timeout, o.commitWait(), max(maxConns, 0))
	from := c.From()
	if ad.err != nil {
		log.Warn().Err(ad.err).Int("pid", os.Getpid()).Int("from_pid", from.PID).Str("verdict", ad.verdict.String()).Msg("hand-over: sessions not taken; the old process keeps them")
		return
	}
	log.Info().Int("pid", os.Getpid()).Str("version", version()).Int("from_pid", from.PID).Str("from_version", from.Version).
		Int("sessions", ad.sessions).Int("conns", ad.conns).Str("verdict", ad.verdict.String()).Msg("hand-over: sessions taken")
}

// taker is the new process's end of the session phase (*handover.Conn).
type taker interface {
	Receive(deadline time.Time, maxItems int) (*handover.Received, error)
	Taken() error
	Refuse(reason string) error
	AwaitCommit(deadline time.Time) (handover.Verdict, error)
}

// adopter takes sessions on (*proxy.Server), adopted runs or drops them
// (*proxy.Adopted).
type adopter interface {
	Adopt(sessions []proxy.HandedSession, conns []proxy.HandedConn) (adopted, error)
}

type adopted interface {
	Start()
	Drop()
	Counts() (sessions, conns int)
}

// serverAdopter is a *proxy.Server as an adopter.
type serverAdopter struct{ s *proxy.Server }

func (a serverAdopter) Adopt(sessions []proxy.HandedSession, conns []proxy.HandedConn) (adopted, error) {
	ad, err := a.s.Adopt(sessions, conns)
	if err != nil {
		return nil, err
	}
	return ad, nil
}

// adoption is how the new process's session phase ended, for the log.
type adoption struct {
	sessions, conns int
	verdict         handover.Verdict
	err             error // why nothing runs here; nil when it does
}

// adoptSessions receives the old process's sessions and connections
// (within timeout, at most maxItems), adopts them and says Taken, then
// waits for the old process's word: they start on its Commit, or when it
// died without one (nobody else holds them); they are dropped (closed
// here, the old process keeps them) on its Abort or when the stream broke
// while it lives. commitWait bounds that wait; it outlasts the old
// process's own deadline, after which it always answers.
func adoptSessions(c taker, srv adopter, timeout, commitWait time.Duration, maxItems int) adoption {
	got, err := c.Receive(time.Now().Add(timeout), maxItems)
	if err != nil {
		c.Refuse(err.Error())
		return adoption{verdict: handover.Aborted, err: err}
	}
	switch os.Getenv(envTestCrash) { // test-only: see envTestCrash
	case "after-sessions":
		os.Exit(3)
	case "pause-after-sessions":
		testPause()
	}
	sessions, conns, err := adoptItems(got)
	if err != nil {
		got.Close()
		c.Refuse(err.Error())
		return adoption{verdict: handover.Aborted, err: err}
	}
	a, err := srv.Adopt(sessions, conns) // it owns the descriptors from here
	if err != nil {
		c.Refuse(err.Error())
		return adoption{verdict: handover.Aborted, err: err}
	}
	c.Taken() // a failure shows in AwaitCommit
	v, err := c.AwaitCommit(time.Now().Add(commitWait))
	ns, nc := a.Counts()
	if v == handover.Aborted {
		a.Drop()
		return adoption{verdict: v, err: err}
	}
	a.Start()
	return adoption{sessions: ns, conns: nc, verdict: v}
}

// adoptItems decodes what was received into the server's terms. A
// description that does not decode refuses the lot: the old process
// speaks another dialect and keeps them.
func adoptItems(got *handover.Received) ([]proxy.HandedSession, []proxy.HandedConn, error) {
	sessions := make([]proxy.HandedSession, len(got.Sessions))
	for i, it := range got.Sessions {
		if err := json.Unmarshal(it.Meta, &sessions[i].Meta); err != nil {
			return nil, nil, fmt.Errorf("decode session %d: %w", i, err)
		}
		sessions[i].Client, sessions[i].Node = it.FDs[0], it.FDs[1]
	}
	conns := make([]proxy.HandedConn, len(got.Conns))
	for i, it := range got.Conns {
		if err := json.Unmarshal(it.Meta, &conns[i].Meta); err != nil {
			return nil, nil, fmt.Errorf("decode connection %d: %w", i, err)
		}
		conns[i].FD = it.FDs[0]
	}
	return sessions, conns, nil
}

// lineage is what this process knows of the older processes still
// serving: the last list its predecessor reported (itself first, then
// those it relays). /status shows it, and this process passes it on to its
// own successor after a hand-over.
type lineage struct {
	srv  *proxy.Server
	mu   sync.Mutex
	list []proxy.Predecessor // guarded by mu
	done chan struct{}       // closed when the predecessor's reports end
}

func newLineage(srv *proxy.Server) *lineage {
	return &lineage{srv: srv, done: make(chan struct{})}
}

// set replaces the list and shows it.
func (l *lineage) set(list []proxy.Predecessor) {
	l.mu.Lock()
	l.list = list
	l.mu.Unlock()
	l.srv.SetPredecessors(list)
}

// get returns the list; none for a nil lineage (no predecessor).
func (l *lineage) get() []proxy.Predecessor {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.list
}

// relay reads the predecessor's reports on c until it exits (or falls
// silent), then forgets it and its own predecessors. It runs on its own
// goroutine, owned by run, which ends it by closing c.
func (l *lineage) relay(c *handover.Conn, log zerolog.Logger) {
	defer close(l.done)
	err := c.Statuses(func(entries []json.RawMessage) {
		list := make([]proxy.Predecessor, 0, len(entries))
		for _, e := range entries {
			var p proxy.Predecessor
			if json.Unmarshal(e, &p) == nil && p.PID > 0 {
				list = append(list, p)
			}
		}
		l.set(list)
	})
	if err != nil {
		log.Debug().Err(err).Msg("hand-over: status of the older process")
	}
	l.set(nil)
	log.Info().Int("from_pid", c.From().PID).Msg("hand-over: the older process ended")
}

// report is this process's status for its successor: its own figures,
// then the older processes it relays.
func report(srv *proxy.Server, l *lineage) []json.RawMessage {
	self := proxy.Predecessor{PID: os.Getpid(), Version: version(), Occupancy: srv.Occupancy(), Updated: time.Now().UTC()}
	out := make([]json.RawMessage, 0, 1+len(l.get()))
	for _, p := range append([]proxy.Predecessor{self}, l.get()...) {
		if b, err := json.Marshal(p); err == nil {
			out = append(out, b)
		}
	}
	return out
}

// retireOpts bound an old process's life after a hand-over.
type retireOpts struct {
	hardStop     time.Duration // --handover-hard-stop
	drainTimeout time.Duration // --drain-timeout
	now          bool          // SIGTERM or SIGINT came during the hand-over: drain at once
}

// retire runs an old process after its hand-over until what it kept has
// ended, or --handover-hard-stop (then it drains as on SIGTERM), reporting
// its figures on m every second and once at the end. SIGTERM or SIGINT
// cut it short the same way; SIGHUP still reloads; SIGUSR2 is ignored.
// Once its own traffic is over it waits for the older processes it relays
// to end (their reports keep reaching the successor), within the same
// bounds. It returns the exit status.
func retire(srv *proxy.Server, m *handover.Mover, l *lineage, o retireOpts, sig <-chan os.Signal, onHUP func(), log zerolog.Logger) int {
	ctx, cancel := context.WithTimeout(context.Background(), o.hardStop)
	defer cancel()
	retired := make(chan error, 1)
	go retireServer(ctx, srv, o.drainTimeout, retired)
	send := func() {
		if m == nil {
			return
		}
		if err := m.Status(report(srv, l)); err != nil {
			log.Debug().Err(err).Msg("hand-over: status not sent; the new process no longer listens")
			m.Close()
			m = nil
		}
	}
	send()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lineageDone <-chan struct{} // nil until this process's own traffic is over
	var bound <-chan time.Time
	hurry := o.now // a signal cut the retirement short: no waiting for older processes
	if hurry {
		log.Info().Dur("drain_timeout", o.drainTimeout).Msg("retiring: shutting down now")
		cancel()
	}
	for {
		select {
		case err := <-retired:
			if err != nil {
				log.Warn().Err(err).Msg("retire: what was left was closed")
			}
			retired = nil
			if l == nil || hurry {
				lineageDone = closedChan
			} else {
				lineageDone = l.done
				t := time.NewTimer(o.hardStop + o.drainTimeout)
				defer t.Stop()
				bound = t.C
			}
		case <-lineageDone:
			send()
			if m != nil {
				m.Close()
			}
			log.Info().Int("pid", os.Getpid()).Msg("stopped")
			return 0
		case <-bound:
			lineageDone = closedChan
		case <-tick.C:
			send()
		case s := <-sig:
			switch s {
			case syscall.SIGHUP:
				onHUP()
			case syscall.SIGUSR2:
				log.Warn().Msg("SIGUSR2: this process has handed over and is retiring; ignored")
			default:
				log.Info().Str("signal", s.String()).Dur("drain_timeout", o.drainTimeout).Msg("retiring: shutting down now")
				hurry = true
				cancel()
				if retired == nil {
					lineageDone = closedChan
				}
			}
		}
	}
}

// closedChan is a channel that is always ready.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// retireServer runs srv.Retire and reports its end.
func retireServer(ctx context.Context, srv *proxy.Server, drainTimeout time.Duration, done chan<- error) {
	done <- srv.Retire(ctx, drainTimeout)
}

// testPause is envTestCrash's "pause-after-sessions".
func testPause() {
	fmt.Fprintln(os.Stderr, `{"level":"warn","message":"test hook: paused"}`)
	time.Sleep(2 * time.Second)
}
