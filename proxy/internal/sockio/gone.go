package sockio

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"
)

// PeerGone reports whether err means the peer closed or reset the
// connection, or tether itself closed it after the other direction ended:
// EOF (also cut short: io.ErrUnexpectedEOF), a reset, a broken pipe,
// ENOTCONN after a half-close, a closed conn or pipe. These are normal ways
// for a connection to end: logged at Debug at most. It is the one answer to
// that question for the forward path and the splice engines.
func PeerGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ENOTCONN)
}

// IsTimeout reports a deadline that passed (a net.Error that says so).
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// HotWindow is how long a reader that just moved bytes keeps reading, holding
// its buffer, before it goes back to waiting for readiness holding none: a
// busy keep-alive client, a quick node answer or a chatty WebSocket then
// costs one read, not a readiness wait and a read.
const HotWindow = 50 * time.Millisecond
