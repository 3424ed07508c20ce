// Package proxy is the client side of tether, read in the order bytes move:
// accept (accept.go) → read and check the request head (head.go) → choose a
// node (route.go) → forward the request with streamed bodies (forward.go,
// body.go) or, after a 101, splice the two sockets (splice.go) → one access
// log line (accesslog.go).
//
// It owns its sockets: an accept loop and one goroutine per client
// connection. Request heads are parsed with fasthttp's header types from
// pooled buffered readers that are borrowed only while bytes are moving, so
// an idle keep-alive connection or spliced session holds no buffer.
package proxy
