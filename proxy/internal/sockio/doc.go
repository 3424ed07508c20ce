// Package sockio is tether's socket I/O below HTTP: waiting for a socket to
// become readable or hang up while holding no buffer (WaitReadable,
// WaitHangup), reads and writes as raw system calls that keep their thread's
// P (RawIO, ReadFD, WriteFD), a request written inside the first read of its
// answer (RawIO.SendBeforeRead), per-connection deadlines that slide or hold
// a minimum rate (DeadlineConn), and the one classifier of errors that mean
// the peer left (PeerGone). ColdConn serves a bare descriptor as a net.Conn
// until a read or write must wait. Listen opens a listener, with SO_REUSEPORT for a
// hitless restart.
//
// It knows descriptors, net.Conn and deadlines only: it must never know HTTP,
// WebSocket frames, nodes, routing or logs.
//
//	var d sockio.DeadlineConn
//	d.Reset(c, sockio.RawConnOf(c), readTimeout, writeTimeout)
//	err := sockio.WaitReadable(c) // then borrow a buffer and read
package sockio
