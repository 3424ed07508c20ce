// Package wiretest holds the HTTP/1.1 and WebSocket test vectors that the
// tests of the wire package, the splice engines and the conductor share: a
// handshake, a node's 101 to it, WebSocket frames, a browser's head. It is
// for tests only; it computes what it returns independently of package wire,
// so a test can compare the two.
package wiretest

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"strings"
)

// Key is the Sec-WebSocket-Key of RFC 6455 section 1.3's example; its
// Sec-WebSocket-Accept is Accept.
const (
	Key    = "dGhlIHNhbXBsZSBub25jZQ=="
	Accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
)

// Handshake is a WebSocket opening handshake for path, with Key.
func Handshake(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Key: " + Key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

// Switched is a node's 101 to a handshake carrying key, its accept computed
// here independently of the wire package.
func Switched(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
}

// Frame builds one WebSocket frame: opcode, payload, masked or not.
func Frame(fin bool, op byte, payload []byte, masked bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	var m byte
	if masked {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		f = append(f, m|byte(n))
	case n <= 0xffff:
		f = append(f, m|126, byte(n>>8), byte(n))
	default:
		f = append(f, m|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	if masked {
		f = append(f, 1, 2, 3, 4)
	}
	return append(f, payload...)
}

// BrowserHead is a typical request head of a co-browse client, about 600
// bytes with cookies.
const BrowserHead = "GET /cobrowse/poll?session=8f14e45fceea167a5a36dedd4bea2543&role=customer HTTP/1.1\r\n" +
	"Host: cobrowse.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n" +
	"Accept: application/json, text/plain, */*\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Referer: https://shop.example.com/checkout\r\n" +
	"Origin: https://shop.example.com\r\n" +
	"Cookie: _ga=GA1.2.1234567890.1700000000; gcbSessionServer=CB_Server_1; theme=dark\r\n" +
	"Cookie: consent=yes\r\n" +
	"Connection: keep-alive\r\n" +
	"Sec-Fetch-Mode: cors\r\n" +
	"Sec-Fetch-Site: same-site\r\n" +
	"\r\n"

// ManyFields is a request head with n small header fields besides Host.
func ManyFields(n int) string {
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: a\r\n")
	for i := range n {
		b.WriteString("X-" + strconv.Itoa(i) + ": v\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}
