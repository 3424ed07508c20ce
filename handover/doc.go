// Package handover moves a running tether's live state to its successor
// over a unix socket, so that the binary can be replaced without closing a
// listening socket or forgetting what the old process knew.
//
// The stream is versioned and length-prefixed: a preamble naming the
// version, then typed records, each a header (payload length, type, count
// of descriptors) and a payload; the descriptors a record carries travel
// with it as SCM_RIGHTS ancillary data. Readers bound the payload size and
// the descriptors per record, and close every descriptor of a record they
// refuse.
//
// The old process (Offer) starts the new binary with the address of a
// socket it listens on, accepts only that child under the same UID
// (SO_PEERCRED), sends its State, and waits for the child's Ready. The new
// process (Take) receives the State, starts serving, then calls Ready.
//
// When both Hellos name CapSessions, the session phase follows on the same
// socket (move.go): the old process's Mover sends items (a description and
// its descriptors: live sessions, idle connections) in batches, the new
// process answers Taken or Abort, the old one Commit or Abort, and then
// reports its Status every second until it exits. A peer that does not
// name the capability gets the first step alone.
//
// It knows sockets and records, not HTTP: what a listener serves and what a
// node's state means are the caller's.
//
//	st, conn, err := handover.Take(addr, self, timeout) // in the new process
//	... serve st.Listeners ...
//	conn.Ready()
//	got, err := conn.Receive(deadline, maxItems) // with conn.Sessions()
//	... hold got ...; conn.Taken(); conn.AwaitCommit(deadline)
package handover
