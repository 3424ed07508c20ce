package pool

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// dialConn opens a new connection to n under the connect timeout (TCP, then
// the TLS handshake for https nodes). A failure marks the node failing at
// once: traffic stops going there before the next probe.
func (n *Node) dialConn() (*Conn, error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.pool.cfg().ConnectTimeout)
	defer cancel()
	start := time.Now()
	nc, err := n.dialRaw(ctx)
	n.Stats.Connect.Observe(time.Since(start))
	if err != nil {
		if isLocalLimit(err) {
			// tether itself is out of descriptors or ports: the node is
			// not at fault, and taking it out would end its sessions.
			return nil, fmt.Errorf("dial %s (%s): %w: %w", n.Name, n.Addr, ErrLocalLimit, err)
		}
		err = fmt.Errorf("dial %s (%s): %w", n.Name, n.Addr, err)
		n.Fail(err)
		return nil, err
	}
	fd, raw := socketFD(nc)
	return &Conn{Conn: nc, Node: n, Raw: raw, fd: fd}, nil
}

// dialRaw dials n's address, with TLS for https nodes.
func (n *Node) dialRaw(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", n.Addr)
	if err != nil {
		return nil, err
	}
	if n.tls == nil {
		return nc, nil
	}
	tc := tls.Client(nc, n.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("tls: %w", err)
	}
	return tc, nil
}

// Fail reports a failure of live traffic to n (a refused or timed-out
// connect, a reset before any answer). The node leaves the routing table at
// once; its health loop brings it back after Rise good probes all started
// after this failure (or after a whole cooldown from the last failure when
// active checks are off). A probe in flight at the time of the failure
// counts for nothing.
func (n *Node) Fail(err error) {
	msg := err.Error()
	n.noteError(msg)
	if n.pool.ctx.Err() != nil {
		return
	}
	if old, now := n.fail(); old&factMask != now&factMask {
		n.changed(old, now, msg) // down now: logged, published, evicted
	}
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// isLocalLimit reports dial errors that come from tether's own limits
// (descriptors, ephemeral ports, memory), not from the node.
func isLocalLimit(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM)
}

// IsRefused reports whether err is a refused connection: the node's port is
// closed, so a request that sent nothing can go to another node at once.
func IsRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}
