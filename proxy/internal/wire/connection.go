package wire

import (
	"bytes"
	"strconv"

	"github.com/valyala/fasthttp"
)

// The tokens of the connection rules and of a serialized head.
var (
	tokClose      = []byte("close")
	tokKeepAlive  = []byte("keep-alive")
	tokHTTP11     = []byte("HTTP/1.1")
	tokCRLF       = []byte("\r\n")
	tokColonSpace = []byte(": ")
)

// HasToken reports whether any of the comma-separated values holds tok.
func HasToken(values [][]byte, tok []byte) bool {
	for _, v := range values {
		for len(v) > 0 {
			var t []byte
			if t, v = NextElement(v); bytes.EqualFold(t, tok) {
				return true
			}
		}
	}
	return false
}

// ClientKeepAlive reports whether the client wants its connection kept:
// HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with "keep-alive".
func ClientKeepAlive(h *fasthttp.RequestHeader) bool {
	conn := h.PeekAll("Connection")
	if bytes.Equal(h.Protocol(), tokHTTP11) {
		return !HasToken(conn, tokClose)
	}
	return HasToken(conn, tokKeepAlive)
}

// AppendResponseHead serializes an answer head as fasthttp parsed it (less
// what the caller removed from h): an HTTP/1.1 status line, then every
// header line, then the empty line.
func AppendResponseHead(dst []byte, h *fasthttp.ResponseHeader) []byte {
	dst = append(dst, tokHTTP11...)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(h.StatusCode()), 10)
	dst = append(dst, ' ')
	msg := h.StatusMessage()
	if len(msg) == 0 {
		msg = []byte(fasthttp.StatusMessage(h.StatusCode()))
	}
	dst = append(dst, msg...)
	dst = append(dst, tokCRLF...)
	for k, v := range h.All() {
		dst = append(dst, k...)
		dst = append(dst, tokColonSpace...)
		dst = append(dst, v...)
		dst = append(dst, tokCRLF...)
	}
	return append(dst, tokCRLF...)
}
