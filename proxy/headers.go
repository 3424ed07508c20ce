package proxy

import (
	"bytes"
	"strconv"

	"github.com/tether-lb/tether/proxy/internal/wire"
	"github.com/valyala/fasthttp"
)

// Rewriting heads between client and node: hop-by-hop fields out (RFC 9110
// section 7.6.1), forwarding fields in, tether's own short answers.

// prepareRequest turns the client's head into the node's, as far as
// fasthttp's header goes: hop-by-hop fields out (RFC 9110 §7.6.1), those
// Connection lists too. fields is what the head carries
// (wire.Framing.Fields): only those fields are looked for, so a head with
// none of them costs nothing here. The client's own forwarding fields stay
// in the header; what tether's take from them (X-Forwarded-For's list, in
// x.xff) or from Host (X-Forwarded-Host's value, in x.fwdHost) is kept, and
// x.fwdDrop names them for appendRequestHead, which leaves their lines out
// and adds tether's as it serializes the head.
func (x *exchange) prepareRequest(fields wire.FieldSet) {
	h := x.req
	x.expect = false
	if fields&wire.FieldExpect != 0 {
		if v := h.PeekBytes(strExpect); len(v) > 0 && bytes.EqualFold(trimOWS(v), str100Continue) {
			x.expect = true
		}
	}
	if fields&wire.FieldConnectionOptions != 0 {
		fields = x.deleteConnectionListed(h.PeekAll("Connection"), fields)
	}
	for _, f := range hopFields {
		if fields&f.field != 0 {
			h.DelBytes(f.name)
		}
	}
	x.xff = x.xff[:0]
	if fields&wire.FieldXForwardedFor != 0 {
		for _, v := range h.PeekAll("X-Forwarded-For") {
			if len(x.xff) > 0 {
				x.xff = append(x.xff, ", "...)
			}
			x.xff = append(x.xff, v...)
		}
	}
	x.fwdHost = x.fwdHost[:0]
	if fields&wire.FieldHost != 0 {
		x.fwdHost = append(x.fwdHost, h.Host()...)
	}
	x.fwdDrop = fields & forwardingFields
	// The protocol version stays the client's: a node answers an HTTP/1.0
	// request with a body an HTTP/1.0 client can read (never chunked).
}

// hopFields are the fields deleted from every request, in this order: the
// hop-by-hop fields (RFC 9110 §7.6.1), Upgrade (an upgrade gets tether's
// own) and Expect (tether answers it). Transfer-Encoding and Content-Length
// stay: the body is forwarded as it came.
var hopFields = [...]struct {
	field wire.FieldSet
	name  []byte
}{
	{wire.FieldConnection, strConnection},
	{wire.FieldKeepAlive, strKeepAlive},
	{wire.FieldProxyConnection, strProxyConnection},
	{wire.FieldProxyAuthorization, strProxyAuthz},
	{wire.FieldProxyAuthenticate, strProxyAuthn},
	{wire.FieldTE, strTE},
	{wire.FieldTrailer, strTrailer},
	{wire.FieldUpgrade, strUpgrade},
	{wire.FieldExpect, strExpect},
}

// forwardingFields are the fields tether sets itself: a client's lines of
// them never reach the node.
const forwardingFields = wire.FieldXForwardedFor | wire.FieldXForwardedProto | wire.FieldXForwardedHost | wire.FieldXRealIP

// deleteConnectionListed deletes the headers named in Connection values
// (the connection-specific options of RFC 9110 §7.6.1). It returns fields
// less the fields it deleted.
func (x *exchange) deleteConnectionListed(values [][]byte, fields wire.FieldSet) wire.FieldSet {
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
		fields &^= wire.FieldOf(tok)
	}
	return fields
}

// clientKeepAlive is wire.ClientKeepAlive, which a head without Connection
// (fields, wire.Framing.Fields) answers by its version alone.
func clientKeepAlive(h *fasthttp.RequestHeader, fields wire.FieldSet) bool {
	if fields&wire.FieldConnection == 0 {
		return bytes.Equal(h.Protocol(), strHTTP11)
	}
	return wire.ClientKeepAlive(h)
}

// appendRequestHead appends the head for the node to dst: the client's as
// prepareRequest left it (fasthttp's serialization), less the client's
// lines of the fields tether sets (x.fwdDrop), then tether's
// forwarding fields (X-Forwarded-For: the client's list then its address;
// X-Forwarded-Proto; X-Forwarded-Host when there is a Host; X-Real-Ip), and
// for an upgrade Connection: upgrade and Upgrade: websocket (the node must
// not switch to another protocol the client listed), then the empty line.
func (x *exchange) appendRequestHead(dst []byte, upgrade bool) []byte {
	from := len(dst)
	dst = x.req.AppendBytes(dst)
	dst = dst[:len(dst)-len("\r\n")] // the empty line goes last
	if x.fwdDrop != 0 {
		dst = dropFields(dst, from, x.fwdDrop)
	}
	dst = append(dst, "X-Forwarded-For: "...)
	if len(x.xff) > 0 {
		dst = append(dst, x.xff...)
		dst = append(dst, ", "...)
	}
	dst = append(dst, x.conn.remoteIP...)
	if x.conn.secure {
		dst = append(dst, "\r\nX-Forwarded-Proto: https"...)
	} else {
		dst = append(dst, "\r\nX-Forwarded-Proto: http"...)
	}
	if len(x.fwdHost) > 0 {
		dst = append(dst, "\r\nX-Forwarded-Host: "...)
		dst = append(dst, x.fwdHost...)
	}
	dst = append(dst, "\r\nX-Real-Ip: "...)
	dst = append(dst, x.conn.remoteIP...)
	if upgrade {
		dst = append(dst, "\r\nConnection: upgrade\r\nUpgrade: websocket"...)
	}
	return append(dst, "\r\n\r\n"...)
}

// dropFields removes from head[from:], a serialized request head without
// its empty line (the request line, then a "Name: value" CRLF line per
// field), the lines of the fields in drop, keeping the others in order.
func dropFields(head []byte, from int, drop wire.FieldSet) []byte {
	i := from + bytes.IndexByte(head[from:], '\n') + 1 // past the request line
	out := i
	for i < len(head) {
		end := len(head)
		if lf := bytes.IndexByte(head[i:], '\n'); lf >= 0 {
			end = i + lf + 1
		}
		line := head[i:end]
		if colon := bytes.IndexByte(line, ':'); colon < 0 || wire.FieldOf(line[:colon])&drop == 0 {
			out += copy(head[out:], line)
		}
		i = end
	}
	return head[:out]
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
