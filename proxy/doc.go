// Package proxy is the conductor of tether's client side, read in the order
// bytes move: accept (accept.go) → PROXY protocol header (proxyproto.go) and
// TLS handshake → read the request head (wire.ReadRequestHead) → choose a
// node (route.Router) → forward the request with streamed bodies (forward.go) or,
// after a 101, hand both sockets to a splice engine (upgrade.go) → one
// access-log line (accesslog.go). conns.go accounts for every connection and
// session; server.go starts and drains it all.
//
// The message format is package wire, the choice of a node package route,
// socket I/O package sockio, the epoll
// loops that hold idle keep-alive connections package keepalive (what a
// connection is to them: httploop.go), the PROXY protocol header package
// proxyhdr, the splice engines package splice and the admin endpoints
// package admin, all under internal/: proxy decides, they carry out;
// admin.go is what the admin endpoints see of a Server. Idle keep-alive
// connections and spliced sessions hold no buffer: an exchange (headers,
// reader, writer) is borrowed only while bytes move.
// docs/ARCHITECTURE.md names every goroutine, who stops it and who waits.
package proxy
