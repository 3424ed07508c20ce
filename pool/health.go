package pool

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/valyala/fasthttp"
)

// healthLoop probes n every HealthInterval (±10% jitter) and moves it down
// after Fall failures in a row and up after Rise successes in a row. A
// passive failure (Fail) wakes it to start counting rises at once. With
// active checks off it only brings a failed node back after the cooldown.
//
// A passive failure bumps n's failure epoch (see failUnit). The loop reads
// the epoch before each probe: a good probe counts toward Rise only if the
// epoch is the one its run of good probes started in and is still that
// after the probe, and the node comes back only in a swap that checks it
// once more. So a probe already in flight when live traffic failed, or a
// timer that fired beside a pending kick, never undoes the failure.
func (n *Node) healthLoop() {
	ctx := n.ctx
	timer := time.NewTimer(n.nextProbe())
	defer timer.Stop()
	var ok, bad int
	run := n.epoch() // the epoch of the current run of good probes, or of the cooldown
	for {
		cfg := n.pool.cfg()
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
			ok, bad = 0, cfg.Fall
			run = n.epoch()
			timer.Reset(n.nextProbe())
			continue
		case <-timer.C:
		}
		epoch := n.epoch()
		if epoch != run { // a passive failure since: start again
			ok, run = 0, epoch
			if cfg.HealthInterval == 0 {
				timer.Reset(n.nextProbe()) // a whole cooldown from here
				continue
			}
		}
		if cfg.HealthInterval == 0 {
			n.up(epoch)
			timer.Reset(n.nextProbe())
			continue
		}
		err := n.probeOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil && isLocalLimit(err) {
			// tether is out of descriptors: no verdict on the node.
			n.log.Error().Err(err).Msg("health probe not sent: out of local resources")
		} else if err != nil {
			ok = 0
			bad++
			msg := err.Error()
			n.noteError(msg)
			if n.State() != StateDown {
				// Counting toward --fall; once down, the state change was
				// logged and further failed probes are Debug only.
				n.log.Warn().Err(err).Int("fails", bad).Msg("health probe failed")
			} else {
				n.log.Debug().Err(err).Msg("health probe failed")
			}
			if bad >= cfg.Fall {
				n.setHealth(false, msg)
			}
		} else if n.epoch() != epoch {
			// Live traffic failed while the probe was out: its answer
			// predates that failure and counts for nothing.
			ok, run = 0, n.epoch()
		} else {
			bad = 0
			ok++
			if ok >= cfg.Rise && !n.up(epoch) {
				ok, run = 0, n.epoch()
			}
		}
		timer.Reset(n.nextProbe())
	}
}

// up clears n's down verdict unless a passive failure came after the
// failure epoch epoch; it reports false when one did.
func (n *Node) up(epoch uint64) bool {
	old, now, ok := n.rise(epoch)
	n.changed(old, now, "")
	return ok
}

// nextProbe is the jittered wait before the next probe, or the cooldown when
// active checks are off.
func (n *Node) nextProbe() time.Duration {
	cfg := n.pool.cfg()
	iv := cfg.HealthInterval
	if iv == 0 {
		return cfg.Cooldown
	}
	jitter := time.Duration(rand.Int64N(int64(iv)/5+1)) - iv/10
	return iv + jitter
}

// probeOnce runs one health check under HealthTimeout: GET HealthPath on a
// new connection; any 2xx answer is healthy.
func (n *Node) probeOnce(ctx context.Context) error {
	cfg := n.pool.cfg()
	ctx, cancel := context.WithTimeout(ctx, cfg.HealthTimeout)
	defer cancel()
	c, err := n.dialRaw(ctx)
	if err != nil {
		return fmt.Errorf("probe %s: %w", n.Name, err)
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	req := "GET " + cfg.HealthPath + " HTTP/1.1\r\nHost: " + n.Addr +
		"\r\nUser-Agent: tether-health\r\nConnection: close\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		return fmt.Errorf("probe %s: %w", n.Name, err)
	}
	var h fasthttp.ResponseHeader
	if err := h.Read(bufio.NewReaderSize(c, 4096)); err != nil {
		return fmt.Errorf("probe %s: read answer: %w", n.Name, err)
	}
	if s := h.StatusCode(); s < 200 || s > 299 {
		return fmt.Errorf("probe %s: status %d", n.Name, s)
	}
	return nil
}
