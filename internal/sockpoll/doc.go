// Package sockpoll is the one zero-timeout poll of a socket that tether
// makes: Now polls descriptors without waiting (ppoll on Linux, poll
// elsewhere), again after EINTR, and Readable asks it whether one
// descriptor has bytes, an end of stream or an error to read. Neither
// blocks, consumes anything or allocates.
//
// The pool asks it whether an idle node connection is still open (a node
// sends nothing unasked); proxy/internal/sockio asks it whether a socket is
// readable before a wait parks its goroutine. It knows descriptors only:
// nothing of connections, HTTP, nodes or logs.
//
//	readable, err := sockpoll.Readable(fd)
package sockpoll
