package wire

import (
	"bytes"
	"strconv"

	"github.com/valyala/fasthttp"
)

// Rewriting a request head between client and node: hop-by-hop fields out
// (RFC 9110 section 7.6.1), forwarding fields in; and tether's own short
// answers.

// NodeHead turns a client's request head into the node's. Prepare edits
// the fasthttp header; Append serializes it with tether's forwarding
// fields. It holds scratch that an exchange reuses request after request:
// the zero value is ready, and nothing of it allocates once warm.
type NodeHead struct {
	// Expect says the client sent Expect: 100-continue (Prepare deleted
	// it: tether answers it).
	Expect bool

	xff     []byte   // the client's X-Forwarded-For list
	host    []byte   // X-Forwarded-Host's value, Host's; empty: none
	drop    FieldSet // the client's forwarding fields: their lines are left out
	connTok [][]byte // header names listed in Connection
}

// Prepare turns the client's head h into the node's, as far as fasthttp's
// header goes: hop-by-hop fields out (RFC 9110 §7.6.1), those Connection
// lists too. fields is what the head carries (Framing.Fields): only those
// fields are looked for, so a head with none of them costs nothing here.
// The client's own forwarding fields stay in the header; what tether's take
// from them (X-Forwarded-For's list) or from Host (X-Forwarded-Host's
// value) is kept, and Append leaves their lines out and adds tether's.
func (n *NodeHead) Prepare(h *fasthttp.RequestHeader, fields FieldSet) {
	n.Expect = false
	if fields&FieldExpect != 0 {
		if v := h.PeekBytes(strExpect); len(v) > 0 && bytes.EqualFold(TrimOWS(v), str100Continue) {
			n.Expect = true
		}
	}
	if fields&FieldConnectionOptions != 0 {
		fields = n.deleteConnectionListed(h, fields)
	}
	for _, f := range hopFields {
		if fields&f.field != 0 {
			h.DelBytes(f.name)
		}
	}
	n.xff = n.xff[:0]
	if fields&FieldXForwardedFor != 0 {
		for _, v := range h.PeekAll("X-Forwarded-For") {
			if len(n.xff) > 0 {
				n.xff = append(n.xff, ", "...)
			}
			n.xff = append(n.xff, v...)
		}
	}
	n.host = n.host[:0]
	if fields&FieldHost != 0 {
		n.host = append(n.host, h.Host()...)
	}
	n.drop = fields & ForwardingFields
	// The protocol version stays the client's: a node answers an HTTP/1.0
	// request with a body an HTTP/1.0 client can read (never chunked).
}

var (
	strConnection      = []byte("Connection")
	strKeepAlive       = []byte("Keep-Alive")
	strUpgrade         = []byte("Upgrade")
	strTE              = []byte("Te")
	strTrailer         = []byte("Trailer")
	strProxyConnection = []byte("Proxy-Connection")
	strProxyAuthz      = []byte("Proxy-Authorization")
	strProxyAuthn      = []byte("Proxy-Authenticate")
	strExpect          = []byte("Expect")
	strCloseTok        = []byte("close")
	strKeepAliveTok    = []byte("keep-alive")
	strUpgradeTok      = []byte("upgrade")
	str100Continue     = []byte("100-continue")
	strHTTP11          = []byte("HTTP/1.1")
)

// hopFields are the fields deleted from every request, in this order: the
// hop-by-hop fields (RFC 9110 §7.6.1), Upgrade (an upgrade gets tether's
// own) and Expect (tether answers it). Transfer-Encoding and Content-Length
// stay: the body is forwarded as it came.
var hopFields = [...]struct {
	field FieldSet
	name  []byte
}{
	{FieldConnection, strConnection},
	{FieldKeepAlive, strKeepAlive},
	{FieldProxyConnection, strProxyConnection},
	{FieldProxyAuthorization, strProxyAuthz},
	{FieldProxyAuthenticate, strProxyAuthn},
	{FieldTE, strTE},
	{FieldTrailer, strTrailer},
	{FieldUpgrade, strUpgrade},
	{FieldExpect, strExpect},
}

// ForwardingFields are the fields tether sets itself: a client's lines of
// them never reach the node.
const ForwardingFields = FieldXForwardedFor | FieldXForwardedProto | FieldXForwardedHost | FieldXRealIP

// deleteConnectionListed deletes the headers named in Connection values
// (the connection-specific options of RFC 9110 §7.6.1). It returns fields
// less the fields it deleted.
func (n *NodeHead) deleteConnectionListed(h *fasthttp.RequestHeader, fields FieldSet) FieldSet {
	n.connTok = n.connTok[:0]
	for _, v := range h.PeekAll("Connection") {
		for len(v) > 0 {
			var tok []byte
			if tok, v = NextElement(v); len(tok) > 0 {
				n.connTok = append(n.connTok, tok)
			}
		}
	}
	for _, tok := range n.connTok {
		if bytes.EqualFold(tok, strCloseTok) || bytes.EqualFold(tok, strKeepAliveTok) || bytes.EqualFold(tok, strUpgradeTok) {
			continue
		}
		h.DelBytes(tok)
		fields &^= FieldOf(tok)
	}
	return fields
}

// KeepAliveFields is ClientKeepAlive, which a head without Connection
// (fields, Framing.Fields) answers by its version alone.
func KeepAliveFields(h *fasthttp.RequestHeader, fields FieldSet) bool {
	if fields&FieldConnection == 0 {
		return IsHTTP11(h)
	}
	return ClientKeepAlive(h)
}

// IsHTTP11 reports a request in HTTP/1.1 (not 1.0).
func IsHTTP11(h *fasthttp.RequestHeader) bool { return bytes.Equal(h.Protocol(), strHTTP11) }

// Append appends the head for the node to dst: h as Prepare left it
// (fasthttp's serialization), less the client's lines of the fields tether
// sets, then tether's forwarding fields (X-Forwarded-For: the client's list
// then remoteIP; X-Forwarded-Proto, https when secure; X-Forwarded-Host
// when there is a Host; X-Real-Ip), and for an upgrade Connection: upgrade
// and Upgrade: websocket (the node must not switch to another protocol the
// client listed), then the empty line.
func (n *NodeHead) Append(dst []byte, h *fasthttp.RequestHeader, remoteIP string, secure, upgrade bool) []byte {
	from := len(dst)
	dst = h.AppendBytes(dst)
	dst = dst[:len(dst)-len("\r\n")] // the empty line goes last
	if n.drop != 0 {
		dst = DropFields(dst, from, n.drop)
	}
	dst = append(dst, "X-Forwarded-For: "...)
	if len(n.xff) > 0 {
		dst = append(dst, n.xff...)
		dst = append(dst, ", "...)
	}
	dst = append(dst, remoteIP...)
	if secure {
		dst = append(dst, "\r\nX-Forwarded-Proto: https"...)
	} else {
		dst = append(dst, "\r\nX-Forwarded-Proto: http"...)
	}
	if len(n.host) > 0 {
		dst = append(dst, "\r\nX-Forwarded-Host: "...)
		dst = append(dst, n.host...)
	}
	dst = append(dst, "\r\nX-Real-Ip: "...)
	dst = append(dst, remoteIP...)
	if upgrade {
		dst = append(dst, "\r\nConnection: upgrade\r\nUpgrade: websocket"...)
	}
	return append(dst, "\r\n\r\n"...)
}

// DropFields removes from head[from:], a serialized request head without
// its empty line (the request line, then a "Name: value" CRLF line per
// field), the lines of the fields in drop, keeping the others in order.
func DropFields(head []byte, from int, drop FieldSet) []byte {
	i := from + bytes.IndexByte(head[from:], '\n') + 1 // past the request line
	out := i
	for i < len(head) {
		end := len(head)
		if lf := bytes.IndexByte(head[i:], '\n'); lf >= 0 {
			end = i + lf + 1
		}
		line := head[i:end]
		if colon := bytes.IndexByte(line, ':'); colon < 0 || FieldOf(line[:colon])&drop == 0 {
			out += copy(head[out:], line)
		}
		i = end
	}
	return head[:out]
}

// TrimOWS trims the optional white space (spaces and tabs) around a field
// value or list element.
func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// errorResponses holds tether's own short answers, built once.
var errorResponses = map[int][]byte{}

func init() {
	for code, text := range map[int]string{
		400: "bad request",
		408: "request timed out",
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

// ErrorResponse returns tether's own short answer for status (a 502 for
// a status it has none for). Every one closes the connection.
func ErrorResponse(status int) []byte {
	if b, ok := errorResponses[status]; ok {
		return b
	}
	return errorResponses[502]
}
