package proxy

import (
	"bytes"
	"strconv"

	"github.com/tether-lb/tether/proxy/internal/wire"
	"github.com/valyala/fasthttp"
)

// Rewriting heads between client and node: hop-by-hop fields out (RFC 9110
// section 7.6.1), forwarding fields in, tether's own short answers.

// prepareRequest turns the client's head into the node's: hop-by-hop
// headers out (RFC 9110 §7.6.1), forwarding headers in, and for an upgrade
// the Connection and Upgrade headers the node needs.
func (x *exchange) prepareRequest(upgrade bool) {
	h := x.req
	x.expect = false
	if v := h.PeekBytes(strExpect); len(v) > 0 && bytes.EqualFold(trimOWS(v), str100Continue) {
		x.expect = true
	}
	x.deleteConnectionListed(h.PeekAll("Connection"))
	for _, k := range hopHeaders {
		h.DelBytes(k)
	}
	h.DelBytes(strUpgrade)
	h.DelBytes(strExpect)

	// X-Forwarded-For: the client's list, then the client's address.
	x.xff = x.xff[:0]
	for _, v := range h.PeekAll("X-Forwarded-For") {
		if len(x.xff) > 0 {
			x.xff = append(x.xff, ", "...)
		}
		x.xff = append(x.xff, v...)
	}
	if len(x.xff) > 0 {
		x.xff = append(x.xff, ", "...)
	}
	x.xff = append(x.xff, x.conn.remoteIP...)
	h.SetBytesKV(strXFF, x.xff)
	if x.conn.secure {
		h.SetBytesKV(strXFProto, strHTTPS)
	} else {
		h.SetBytesKV(strXFProto, strHTTP)
	}
	if host := h.PeekBytes(strHost); len(host) > 0 {
		h.SetBytesKV(strXFHost, host)
	} else {
		h.DelBytes(strXFHost)
	}
	h.SetBytesK(strXRealIP, x.conn.remoteIP)
	if upgrade {
		// WebSocket alone: the node must not switch to another protocol
		// the client listed.
		h.SetBytesKV(strConnection, strUpgradeTok)
		h.SetBytesKV(strUpgrade, strWebSocket)
	}
	// The protocol version stays the client's: a node answers an HTTP/1.0
	// request with a body an HTTP/1.0 client can read (never chunked).
}

// hopHeaders are removed from every forwarded message (RFC 9110 §7.6.1);
// Transfer-Encoding and Content-Length framing is re-emitted by tether.
var hopHeaders = [][]byte{strConnection, strKeepAlive, strProxyConnection, strProxyAuthz, strProxyAuthn, strTE, strTrailer}

// deleteConnectionListed deletes the headers named in Connection values
// (the connection-specific options of RFC 9110 §7.6.1).
func (x *exchange) deleteConnectionListed(values [][]byte) {
	x.connTok = x.connTok[:0]
	for _, v := range values {
		for len(v) > 0 {
			var tok []byte
			if tok, v = wire.NextElement(v); len(tok) > 0 {
				x.connTok = append(x.connTok, tok)
			}
		}
	}
	for _, tok := range x.connTok {
		if bytes.EqualFold(tok, strClose) || bytes.EqualFold(tok, strKeepAliveTok) || bytes.EqualFold(tok, strUpgradeTok) {
			continue
		}
		x.req.DelBytes(tok)
	}
}

// errorResponses holds tether's own short answers, built once.
var errorResponses = map[int][]byte{}

func init() {
	for code, text := range map[int]string{
		400: "bad request",
		408: "request head timed out",
		413: "request body too large",
		431: "request head too large",
		502: "bad gateway: the node failed or sent an invalid answer",
		503: "service unavailable: no healthy node",
		504: "gateway timeout: the node did not answer in time",
	} {
		body := "tether: " + text + "\n"
		head := "HTTP/1.1 " + strconv.Itoa(code) + " " + fasthttp.StatusMessage(code) + "\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
			"Connection: close\r\n"
		if code == 503 {
			head += "Retry-After: 2\r\n"
		}
		errorResponses[code] = []byte(head + "\r\n" + body)
	}
}

// errorResponse returns tether's answer for status.
func errorResponse(status int) []byte {
	if b, ok := errorResponses[status]; ok {
		return b
	}
	return errorResponses[502]
}
