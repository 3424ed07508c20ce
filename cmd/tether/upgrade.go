package main

import (
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/handover"
	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy"
)

// version names this binary: its module version, or the VCS revision it
// was built from (with "-dirty" for uncommitted changes).
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	if rev != "" {
		return rev[:min(12, len(rev))] + dirty
	}
	return "devel"
}

// The listeners' names in a hand-over, after their flags.
const (
	roleListen = "listen"
	roleTLS    = "tls-listen"
	roleAdmin  = "admin"
)

// listeners are tether's listening sockets; nil where not configured.
type listeners struct {
	plain, tls, admin net.Listener
}

// each calls f for every listener by role.
func (l *listeners) each(f func(role string, ln net.Listener)) {
	for _, r := range []struct {
		role string
		ln   net.Listener
	}{{roleListen, l.plain}, {roleTLS, l.tls}, {roleAdmin, l.admin}} {
		if r.ln != nil {
			f(r.role, r.ln)
		}
	}
}

// close closes every listener.
func (l *listeners) close() { l.each(func(_ string, ln net.Listener) { ln.Close() }) }

// openListeners opens the listeners cfg names, taking each from handed
// (the sockets of the tether this one replaces) when it has one of the
// same role. A handed socket is used even when the flag now names another
// port (logged: moving a listener needs a restart without hand-over); one
// that cfg no longer wants is closed.
func openListeners(cfg *proxy.Config, handed []handover.Listener, log zerolog.Logger) (*listeners, error) {
	byRole := map[string]handover.Listener{}
	for _, h := range handed {
		byRole[h.Name] = h
	}
	var l listeners
	for _, r := range []struct {
		role, addr string
		ln         *net.Listener
	}{{roleListen, cfg.Listen, &l.plain}, {roleTLS, cfg.TLS.Listen, &l.tls}, {roleAdmin, cfg.Admin, &l.admin}} {
		h, ok := byRole[r.role]
		delete(byRole, r.role)
		if r.addr == "" {
			if ok {
				log.Warn().Str("flag", "--"+r.role).Str("addr", h.Addr).Msg("hand-over: listener not configured here; closed")
				h.File.Close()
			}
			continue
		}
		var ln net.Listener
		var err error
		if ok {
			ln, err = net.FileListener(h.File)
			h.File.Close()
			if err == nil && !samePort(r.addr, ln.Addr()) {
				log.Warn().Str("flag", "--"+r.role).Str("running", ln.Addr().String()).Str("configured", r.addr).Msg("hand-over: kept the listener handed over; moving it needs a restart")
			}
		} else {
			ln, err = proxy.Listen(r.addr, cfg.ReusePort)
		}
		if err != nil {
			l.close()
			for _, h := range byRole {
				h.File.Close()
			}
			return nil, fmt.Errorf("--%s: %w", r.role, err)
		}
		*r.ln = ln
	}
	for _, h := range byRole {
		log.Warn().Str("listener", h.Name).Str("addr", h.Addr).Msg("hand-over: unknown listener; closed")
		h.File.Close()
	}
	return &l, nil
}

// samePort reports whether addr (a flag's value) and a's ports agree, or
// addr asks for any port.
func samePort(addr string, a net.Addr) bool {
	_, port, err := net.SplitHostPort(addr)
	ta, ok := a.(*net.TCPAddr)
	return err != nil || !ok || port == "0" || port == fmt.Sprint(ta.Port)
}

// upgradeOpts are the flags of the hand-over to a new binary.
type upgradeOpts struct {
	binary   string        // --upgrade-binary; empty: the running binary's path, resolved again
	timeout  time.Duration // --handover-timeout
	hardStop time.Duration // --handover-hard-stop
}

// commitWait bounds the new process's wait for the old one's Commit after
// Taken: longer than the old process's own bound (timeout, started
// earlier), after which it always answers, and never short.
func (o upgradeOpts) commitWait() time.Duration { return max(2*o.timeout, time.Minute) }

// caps are the hand-over capabilities of this binary.
var caps = []string{handover.CapSessions}

// offerState is what this process hands over: copies of its listening
// sockets and its nodes' facts. The caller closes the files.
func offerState(l *listeners, p *pool.Pool) (handover.State, error) {
	st := handover.State{From: handover.Hello{PID: os.Getpid(), Version: version(), Caps: caps}}
	var err error
	l.each(func(role string, ln net.Listener) {
		fl, ok := ln.(interface{ File() (*os.File, error) })
		if !ok || err != nil {
			return
		}
		var f *os.File
		if f, err = fl.File(); err == nil {
			st.Listeners = append(st.Listeners, handover.Listener{Name: role, Addr: ln.Addr().String(), File: f})
		}
	})
	if err != nil {
		st.Close()
		return st, fmt.Errorf("copy listener: %w", err)
	}
	for _, f := range p.Facts() {
		st.Nodes = append(st.Nodes, handover.NodeState{Name: f.Name, URL: f.URL, Down: f.Down, Drained: f.Drained, Since: f.Since})
	}
	return st, nil
}

// seedOf turns the handed node states into the pool's seed.
func seedOf(nodes []handover.NodeState) []pool.NodeFacts {
	out := make([]pool.NodeFacts, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, pool.NodeFacts{Name: n.Name, URL: n.URL, Down: n.Down, Drained: n.Drained, Since: n.Since})
	}
	return out
}

// upgradeResult is how a hand-over to a new binary ended.
type upgradeResult struct {
	child *handover.Child
	err   error
}

// upgrade starts the new binary with this process's arguments and hands
// it the listeners and node facts; it reports on done. It runs beside the
// signal loop, which goes on serving signals meanwhile; closing callOff
// (SIGTERM) kills the new process unless it has said Ready.
func upgrade(o upgradeOpts, args []string, l *listeners, p *pool.Pool, callOff <-chan struct{}, log zerolog.Logger, done chan<- upgradeResult) {
	bin := o.binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil { // the path the binary now has, even if replaced
			done <- upgradeResult{err: fmt.Errorf("find the binary: %w", err)}
			return
		}
	}
	st, err := offerState(l, p)
	if err != nil {
		done <- upgradeResult{err: err}
		return
	}
	defer st.Close()
	log.Info().Str("binary", bin).Int("pid", os.Getpid()).Str("version", version()).Int("listeners", len(st.Listeners)).Int("nodes", len(st.Nodes)).Dur("timeout", o.timeout).Msg("hand-over: starting the new binary")
	offer := &handover.Offer{
		Binary:  bin,
		Args:    args,
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
		Timeout: o.timeout,
		State:   st,
		Refused: func(err error) { log.Warn().Err(err).Msg("hand-over: connection refused") },
		Cancel:  callOff,
	}
	child, err := offer.Run()
	done <- upgradeResult{child: child, err: err}
}

// takeOver receives the state of the tether this one replaces, from the
// hand-over socket at addr. It returns the listeners handed over and the
// connection to answer Ready or Abort on.
func takeOver(addr string, timeout time.Duration, log zerolog.Logger) (*handover.State, *handover.Conn, error) {
	st, c, err := handover.Take(addr, handover.Hello{PID: os.Getpid(), Version: version(), Caps: caps}, timeout)
	if err != nil {
		return nil, nil, err
	}
	log.Info().Int("pid", os.Getpid()).Str("version", version()).Int("from_pid", st.From.PID).Str("from_version", st.From.Version).Int("listeners", len(st.Listeners)).Int("nodes", len(st.Nodes)).Bool("sessions", c.Sessions()).Msg("hand-over: state received")
	return st, c, nil
}

// sdNotify sends state to systemd's notification socket ($NOTIFY_SOCKET)
// when there is one (Type=notify units); otherwise it does nothing.
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	// Go reads a leading '@' as the abstract namespace, as systemd means it.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}
