// Package proxyhdr reads the PROXY protocol header (v1 text, v2 binary) that
// a layer-4 tier in front of tether (HAProxy in TCP mode, an NLB, IPVS with
// a sidecar) sends before its client's first byte, and returns the client
// address it carries (Read); Trusted says whether a source may send one. The
// header is read from the socket exactly, not one byte past it, so the
// request or the ClientHello behind it is read by the usual stages from the
// socket itself (the conn stays a *net.TCPConn). The bytes are parsed by
// go-proxyproto.
//
// It knows sockets and this one header: it must never know HTTP, TLS,
// Config, counters or logs; the conductor decides what a refusal costs.
//
//	conn.SetReadDeadline(time.Now().Add(headerTimeout))
//	addr, err := proxyhdr.Read(conn, rawConn) // "" for LOCAL or UNKNOWN
package proxyhdr
