package wire

import (
	"crypto/sha1"
	"encoding/base64"
)

// The server side of a WebSocket opening handshake (RFC 6455 section 4.2.2):
// the Sec-WebSocket-Accept a node's 101 must carry for the client's key.

// wsGUID is what a node appends to the client's Sec-WebSocket-Key before
// hashing it into Sec-WebSocket-Accept (RFC 6455 section 1.3).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// WSAcceptLen is the length of a Sec-WebSocket-Accept: base64 of a SHA-1.
const WSAcceptLen = 28

// WSAccept writes into dst the Sec-WebSocket-Accept that answers key:
// base64(SHA-1(key + wsGUID)). key is a checked 24-byte value (a request
// ReadRequestHead found to be a complete handshake); nothing is allocated.
func WSAccept(dst *[WSAcceptLen]byte, key []byte) {
	var in [wsKeyLen + len(wsGUID)]byte
	copy(in[:wsKeyLen], key)
	copy(in[wsKeyLen:], wsGUID)
	sum := sha1.Sum(in[:])
	base64.StdEncoding.Encode(dst[:], sum[:])
}
