package wire

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestHeadRequestFields: a request's Framing.Fields names the fields of
// note it carries, whatever their case, and no others.
func TestHeadRequestFields(t *testing.T) {
	t.Parallel()
	const all = FieldConnection | FieldKeepAlive | FieldProxyConnection | FieldProxyAuthorization |
		FieldProxyAuthenticate | FieldTE | FieldTrailer | FieldUpgrade | FieldExpect | FieldXForwardedFor |
		FieldXForwardedProto | FieldXForwardedHost | FieldXRealIP | FieldHost | FieldConnectionOptions
	for _, tc := range []struct {
		name, head string
		want       FieldSet
	}{
		{"browser", "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: ua\r\nAccept: */*\r\nAccept-Language: en\r\n" +
			"Accept-Encoding: gzip\r\nCookie: a=b\r\nReferer: http://a/\r\nUpgrade-Insecure-Requests: 1\r\n\r\n", FieldHost},
		{"HTTP/1.0, no Host", "GET / HTTP/1.0\r\n\r\n", 0},
		{"HTTP/1.0, empty Host", "GET / HTTP/1.0\r\nHost: \r\n\r\n", 0},
		{"absolute form", "GET http://a/ HTTP/1.0\r\n\r\n", FieldHost},
		{"Connection keep-alive", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", FieldHost | FieldConnection},
		{"Connection close, upgrade", "GET / HTTP/1.1\r\nHost: a\r\nconnection: Close, ,UPGRADE\r\nUpgrade: h2c\r\n\r\n", FieldHost | FieldConnection | FieldUpgrade},
		{"Connection options", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: x-a\r\n\r\n", FieldHost | FieldConnection | FieldConnectionOptions},
		{"every one", "POST / HTTP/1.1\r\nHOST: a\r\nConnection: close, x-a\r\nKeep-Alive: 1\r\nProxy-Connection: 1\r\n" +
			"Proxy-Authorization: 1\r\nProxy-Authenticate: 1\r\nte: 1\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\nExpect: 100-continue\r\n" +
			"X-Forwarded-For: 1\r\nx-forwarded-proto: 1\r\nX-FORWARDED-HOST: 1\r\nX-Real-IP: 1\r\nTransfer-Encoding: chunked\r\n\r\n", all},
		{"near names", "GET / HTTP/1.1\r\nHost: a\r\nTE2: 1\r\nX-Forwarded-Fo: 1\r\nX-Real-IPs: 1\r\nConnections: 1\r\nUpgraded: 1\r\nExpects: 1\r\n\r\n", FieldHost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr, err := ReadRequestHead(bufio.NewReaderSize(strings.NewReader(tc.head), testMaxHead), NewRequestHeader(), testMaxHead, testMaxFields)
			if err != nil {
				t.Fatal(err)
			}
			if fr.Fields != tc.want {
				t.Errorf("fields %015b, want %015b", fr.Fields, tc.want)
			}
		})
	}
}

// checkFields requires fr.Fields (of the request head data starts with, read
// into h) to name exactly the fields found by a plain reading of the head's
// lines, Host exactly when h has a non-empty one, and
// FieldConnectionOptions exactly when a Connection element is not close,
// keep-alive or upgrade (names and elements compared in ASCII, as the scan
// does).
func checkFields(t *testing.T, data []byte, h *fasthttp.RequestHeader, fr Framing) {
	t.Helper()
	head, _, _ := strings.Cut(string(data), "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	var want FieldSet
	for _, l := range lines[1:] {
		name, v, _ := strings.Cut(l, ":")
		for n, f := range map[string]FieldSet{
			"connection": FieldConnection, "keep-alive": FieldKeepAlive, "proxy-connection": FieldProxyConnection,
			"proxy-authorization": FieldProxyAuthorization, "proxy-authenticate": FieldProxyAuthenticate, "te": FieldTE,
			"trailer": FieldTrailer, "upgrade": FieldUpgrade, "expect": FieldExpect, "x-forwarded-for": FieldXForwardedFor,
			"x-forwarded-proto": FieldXForwardedProto, "x-forwarded-host": FieldXForwardedHost, "x-real-ip": FieldXRealIP,
		} {
			if asciiEqualFold(name, n) {
				want |= f
			}
		}
		if !asciiEqualFold(name, "connection") {
			continue
		}
		for e := range strings.SplitSeq(v, ",") {
			e = strings.Trim(e, " \t")
			if e != "" && !asciiEqualFold(e, "close") && !asciiEqualFold(e, "keep-alive") && !asciiEqualFold(e, "upgrade") {
				want |= FieldConnectionOptions
			}
		}
	}
	if len(h.Host()) > 0 {
		want |= FieldHost
	}
	if fr.Fields != want {
		t.Fatalf("fields %015b, want %015b\n%q", fr.Fields, want, data)
	}
}

// asciiEqualFold is strings.EqualFold for ASCII letters only.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
