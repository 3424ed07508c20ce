// Command tether is a load balancer for long, sticky, WebSocket-heavy
// sessions. It reads its flags into one proxy.Config, builds the logger and
// runs the server until SIGTERM or SIGINT, or until SIGUSR2 has handed its
// listeners to a new process (upgrade.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/handover"
	"github.com/tether-lb/tether/internal/heap"
	"github.com/tether-lb/tether/internal/logwriter"
	"github.com/tether-lb/tether/internal/procs"
	"github.com/tether-lb/tether/proxy"
)

// newLogger builds the process logger on stderr.
func newLogger(opts options) zerolog.Logger {
	level, _ := zerolog.ParseLevel(opts.logLevel)
	var w io.Writer = os.Stderr
	if opts.logFormat == "console" {
		w = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if slices.Contains(args, "--version") || slices.Contains(args, "-version") {
		fmt.Println("tether", version())
		return 0
	}
	handoverAddr := os.Getenv(handover.EnvAddr)
	os.Unsetenv(handover.EnvAddr) // not for a later hand-over's child
	cfg, opts, err := parseFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tether: %v\n", err)
		return 2
	}
	log := newLogger(opts)
	zerolog.DurationFieldUnit = time.Millisecond
	zerolog.DurationFieldInteger = false

	var accessOut io.Writer = os.Stdout
	if opts.logFormat == "console" {
		accessOut = zerolog.ConsoleWriter{Out: os.Stdout, TimeFormat: time.RFC3339}
	}
	aw := logwriter.New(accessOut, 0)
	defer aw.Close()
	access := zerolog.New(aw).With().Timestamp().Str("log", "access").Logger()

	procs.Fix(opts.procs) // before proxy.New: its loops count processors

	var handed *handover.State
	var hc *handover.Conn
	var preds *lineage // the older processes still serving, when this one took over sessions
	if handoverAddr != "" {
		if handed, hc, err = takeOver(handoverAddr, opts.upgrade.timeout, log); err != nil {
			log.Error().Err(err).Msg("hand-over: nothing received; the old process goes on serving")
			return 1
		}
		cfg.Pool.Seed = seedOf(handed.Nodes)
	}
	srv, err := proxy.New(cfg, log, access)
	if err != nil {
		if hc != nil {
			hc.Abort(redacted(err).Error())
			handed.Close()
		}
		fmt.Fprintf(os.Stderr, "tether: %v\n", redacted(err))
		return 2
	}
	var handedLns []handover.Listener
	if handed != nil {
		handedLns = handed.Listeners
	}
	lns, err := openListeners(&cfg, handedLns, log)
	if err != nil {
		if hc != nil {
			hc.Abort(err.Error())
		}
		log.Error().Err(err).Msg("serve")
		srv.Shutdown(context.Background())
		return 1
	}
	defer procs.Run(opts.procs, log)()
	if opts.releaseMemory {
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			heap.ReleaseAfterBursts(ctx, log)
		}()
		defer func() { stop(); <-done }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR2)
	if hc != nil {
		// Everything that could fail has succeeded: the old process may stop
		// accepting. Ready goes before the first accept, so that if the old
		// process hears it too late and kills this one, this one has taken
		// no connection: they wait in the sockets' queues for the old one.
		if err := hc.Ready(); err != nil {
			log.Warn().Err(err).Msg("hand-over: ready not sent; the old process decides at its timeout")
		}
	}
	serveErr := make(chan error, 3)
	go serve(srv, lns.plain, serveErr)
	go serveAdmin(srv, lns.admin, serveErr)
	go serveTLS(srv, lns.tls, serveErr)
	if hc != nil {
		if err := sdNotify(fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid())); err != nil {
			log.Warn().Err(err).Msg("hand-over")
		}
		log.Info().Int("pid", os.Getpid()).Str("version", version()).Int("from_pid", handed.From.PID).Msg("hand-over: serving")
		if hc.Sessions() {
			takeSessions(hc, srv, opts.upgrade, cfg.MaxConns, log)
			preds = newLineage(srv)
			go preds.relay(hc, log)
			defer func() { hc.Close(); <-preds.done }()
		}
	} else if err := sdNotify("READY=1"); err != nil {
		log.Warn().Err(err).Msg("start")
	}

	// handedOver ends this process after a hand-over in which the new
	// process said Ready: it hands its sessions over and retires (at once
	// when stopping: SIGTERM or SIGINT came meanwhile), or, to a new binary
	// that takes none, drains.
	handedOver := func(r upgradeResult, stopping bool) int {
		srv.StopAccepting()
		if m := r.child.Mover; m != nil {
			handSessions(srv, m, r.child.Hello, opts.upgrade, log)
			onHUP := func() { reload(srv, args, cfg.Pool.SelfAddrs, log) }
			return retire(srv, m, preds, retireOpts{hardStop: opts.upgrade.hardStop, drainTimeout: cfg.Pool.DrainTimeout, now: stopping}, sig, onHUP, log)
		}
		log.Info().Int("pid", os.Getpid()).Str("version", version()).Int("new_pid", r.child.PID).Str("new_version", r.child.Version).Msg("hand-over done: the new process serves; draining")
		return drain(srv, cfg.Pool.DrainTimeout, log)
	}
	upgraded := make(chan upgradeResult, 1)
	upgrading := false
	var callOff chan struct{} // closed to call the running hand-over off
	for {
		select {
		case err := <-serveErr:
			log.Error().Err(err).Msg("serve")
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			srv.Shutdown(ctx)
			cancel()
			return 1
		case r := <-upgraded:
			upgrading = false
			if r.err != nil {
				log.Error().Err(r.err).Int("pid", os.Getpid()).Str("version", version()).Msg("hand-over failed: this process goes on serving")
				continue
			}
			return handedOver(r, false)
		case s := <-sig:
			switch s {
			case syscall.SIGHUP:
				reload(srv, args, cfg.Pool.SelfAddrs, log)
				continue
			case syscall.SIGUSR2:
				if upgrading {
					log.Warn().Msg("SIGUSR2: a hand-over is running; ignored")
					continue
				}
				upgrading = true
				callOff = make(chan struct{})
				go upgrade(opts.upgrade, args, lns, srv.Pool(), callOff, log, upgraded)
				continue
			}
			if upgrading {
				// Stopping: the new process, not serving yet, is killed
				// rather than left serving alone. One that said Ready
				// first serves: this process hands over as usual and
				// retires at once.
				close(callOff)
				r := <-upgraded
				if r.err == nil {
					log.Info().Str("signal", s.String()).Int("new_pid", r.child.PID).Msg("hand-over: the new process serves already; this process hands over and retires at once")
					return handedOver(r, true)
				}
				log.Warn().Err(r.err).Str("signal", s.String()).Int("pid", os.Getpid()).Msg("hand-over called off: shutting down")
			}
			log.Info().Str("signal", s.String()).Dur("drain_timeout", cfg.Pool.DrainTimeout).Msg("shutting down")
			if delay := srv.Withdraw(); delay > 0 {
				waitDrainDelay(delay, sig, log)
			}
			return drain(srv, cfg.Pool.DrainTimeout, log)
		}
	}
}

// drain shuts srv down, letting what is in flight finish for up to
// timeout, and returns the exit status.
func drain(srv *proxy.Server, timeout time.Duration, log zerolog.Logger) int {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := srv.Shutdown(ctx)
	cancel()
	if err != nil {
		log.Warn().Err(err).Msg("drain timed out; connections closed")
	}
	log.Info().Msg("stopped")
	return 0
}

// waitDrainDelay waits out --drain-delay, while /healthz answers 503 and
// tether still serves, or until a second SIGTERM or SIGINT.
func waitDrainDelay(delay time.Duration, sig <-chan os.Signal, log zerolog.Logger) {
	log.Info().Dur("drain_delay", delay).Msg("/healthz answers 503; serving until the drain delay ends")
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case s := <-sig:
			if s != syscall.SIGHUP && s != syscall.SIGUSR2 {
				log.Info().Str("signal", s.String()).Msg("drain delay cut short")
				return
			}
			log.Warn().Str("signal", s.String()).Msg("signal during the drain delay: ignored, tether is stopping")
		}
	}
}

// reload re-reads the command line and its --config file (flags still win)
// and applies the result; a file that does not parse or validate keeps the
// running configuration. The listeners stay those tether started with
// (their changes need a restart), and so does self, their addresses that
// discovery refuses.
func reload(srv *proxy.Server, args []string, self []string, log zerolog.Logger) {
	cfg, _, err := parseFlags(args, io.Discard)
	if err == nil {
		cfg.Pool.SelfAddrs = self
		err = srv.Reload(cfg)
	}
	if err != nil {
		log.Error().Err(redacted(err)).Msg("reload failed: configuration unchanged")
	}
}

// serveTLS runs the TLS listener (nil: none) and reports a failure.
func serveTLS(srv *proxy.Server, ln net.Listener, done chan<- error) {
	if ln == nil {
		return
	}
	if err := srv.ServeTLS(ln); err != nil {
		done <- fmt.Errorf("--tls-listen: %w", err)
	}
}

// serveAdmin runs the admin listener (nil: none) and reports a failure.
func serveAdmin(srv *proxy.Server, ln net.Listener, done chan<- error) {
	if ln == nil {
		return
	}
	if err := srv.ServeAdmin(ln); err != nil {
		done <- fmt.Errorf("--admin: %w", err)
	}
}

// serve runs the plain listener (nil: none) and reports how it ended.
func serve(srv *proxy.Server, ln net.Listener, done chan<- error) {
	if ln == nil {
		return
	}
	if err := srv.Serve(ln); err != nil {
		done <- fmt.Errorf("--listen: %w", err)
	}
}
