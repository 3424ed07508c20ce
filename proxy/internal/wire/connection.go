package wire

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// The tokens of the connection rules and of a serialized head.
var (
	tokClose     = []byte("close")
	tokKeepAlive = []byte("keep-alive")
	tokHTTP11    = []byte("HTTP/1.1")
	tokCRLF      = []byte("\r\n")
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
