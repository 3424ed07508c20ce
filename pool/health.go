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
func (n *Node) healthLoop() {
	ctx := n.ctx
	timer := time.NewTimer(n.nextProbe())
	defer timer.Stop()
	var ok, bad int
	for {
		cfg := n.pool.cfg()
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
			ok, bad = 0, cfg.Fall
			timer.Reset(n.nextProbe())
			continue
		case <-timer.C:
		}
		if cfg.HealthInterval == 0 {
			n.setHealth(true, "")
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
		} else {
			bad = 0
			ok++
			if ok >= cfg.Rise {
				n.setHealth(true, "")
			}
		}
		timer.Reset(n.nextProbe())
	}
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
