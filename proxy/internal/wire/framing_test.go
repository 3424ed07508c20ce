package wire

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
	"github.com/valyala/fasthttp"
)

var updateFraming = flag.Bool("update-framing", false, "rewrite the table in FRAMING.md from the code")

// framingCase is one row of the table in FRAMING.md: raw bytes fed to
// fasthttp alone and to tether.
type framingCase struct {
	name     string
	response bool
	head     bool // response to a HEAD request
	raw      string
}

const testMaxHead = 4096

// testMaxFields is --max-header-fields in the head tests: the default.
const testMaxFields = 100

var framingCases = []framingCase{
	{name: "plain GET", raw: "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"},
	{name: "POST with Content-Length", raw: "POST /send HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"},
	{name: "chunked POST", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{name: "TE `Chunked` (case)", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"},
	{name: "HTTP/1.0 without Host", raw: "GET / HTTP/1.0\r\n\r\n"},
	{name: "HTTP/1.0 keep-alive", raw: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"},
	{name: "Connection: close", raw: "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"},
	{name: "one leading CRLF", raw: "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "two leading CRLFs", raw: "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "leading bare LF", raw: "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "bare LF line ends", raw: "GET / HTTP/1.1\nHost: a\n\n"},
	{name: "bare LF after a field", raw: "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n"},
	{name: "bare LF ends the head", raw: "GET / HTTP/1.1\r\nHost: a\r\n\n"},
	{name: "bare CR in a value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"},
	{name: "bare CR in request line", raw: "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "obs-fold", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"},
	{name: "obs-fold of Content-Length", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 5\r\n\r\nhello"},
	{name: "whitespace before first field", raw: "GET / HTTP/1.1\r\n Host: a\r\n\r\n"},
	{name: "space before colon", raw: "GET / HTTP/1.1\r\nHost : a\r\n\r\n"},
	{name: "space before colon, Content-Length", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello"},
	{name: "space inside name", raw: "GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n"},
	{name: "control byte in name", raw: "GET / HTTP/1.1\r\nHost: a\r\nX\x01Y: z\r\n\r\n"},
	{name: "empty name", raw: "GET / HTTP/1.1\r\nHost: a\r\n: z\r\n\r\n"},
	{name: "line without colon", raw: "GET / HTTP/1.1\r\nHost: a\r\nFoo\r\n\r\n"},
	{name: "NUL in value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n"},
	{name: "DEL in value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n"},
	{name: "HTAB in value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n"},
	{name: "obs-text in value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n"},
	{name: "HTTP/0.9 request line", raw: "GET /\r\n\r\n"},
	{name: "HTTP/2.0 version", raw: "GET / HTTP/2.0\r\nHost: a\r\n\r\n"},
	{name: "HTTP/1.2 version", raw: "GET / HTTP/1.2\r\nHost: a\r\n\r\n"},
	{name: "HTTP/2 preface", raw: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
	{name: "lower-case version", raw: "GET / http/1.1\r\nHost: a\r\n\r\n"},
	{name: "double space in request line", raw: "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "tab in request line", raw: "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "space after version", raw: "GET / HTTP/1.1 \r\nHost: a\r\n\r\n"},
	{name: "method not a token", raw: "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "CONNECT", raw: "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"},
	{name: "DEL in target", raw: "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "non-ASCII in target", raw: "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "bad %-escape in path", raw: "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "bare % in query", raw: "GET /?q=100% HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "absolute-form", raw: "GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n"},
	{name: "absolute-form with userinfo", raw: "GET http://u@example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"},
	{name: "absolute-form ftp", raw: "GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"},
	{name: "OPTIONS *", raw: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "GET *", raw: "GET * HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "target without slash", raw: "GET foo HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "HTTP/1.1 without Host", raw: "GET / HTTP/1.1\r\n\r\n"},
	{name: "empty Host", raw: "GET / HTTP/1.1\r\nHost:\r\n\r\n"},
	{name: "two Hosts", raw: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
	{name: "two identical Hosts", raw: "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"},
	{name: "Host with IPv6 and port", raw: "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"},
	{name: "Host with space", raw: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"},
	{name: "Host with slash", raw: "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"},
	{name: "CL on two identical lines", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"},
	{name: "CL on two differing lines", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
	{name: "CL `5` and `05`", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\nhello"},
	{name: "CL list `5, 5`", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello"},
	{name: "CL list `5, 6`", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!"},
	{name: "CL `+5`", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello"},
	{name: "CL `-1`", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"},
	{name: "CL `0x5`", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello"},
	{name: "CL `5x`", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello"},
	{name: "CL empty", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"},
	{name: "CL with whitespace around", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t5 \r\n\r\nhello"},
	{name: "CL 18 digits", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n"},
	{name: "CL 19 digits", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000000000\r\n\r\n"},
	{name: "CL overflows int64", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n"},
	{name: "TE `gzip, chunked`", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"},
	{name: "TE `chunked, chunked`", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"},
	{name: "TE chunked on two lines", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{name: "TE `identity`", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"},
	{name: "TE `identity` with CL", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello"},
	{name: "TE `xchunked`", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"},
	{name: "TE `chunked;x=1`", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n"},
	{name: "TE `chunked,`", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n"},
	{name: "TE empty", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n"},
	{name: "CL then TE", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{name: "TE then CL", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"},
	{name: "TE in HTTP/1.0", raw: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{name: "Transfer_Encoding", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n"},
	{name: "Content_Length", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\nhello"},
	{name: "Trailer: Content-Length", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n"},
	{name: "Trailer: X-Checksum", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"},
	{name: "fragment in target", raw: "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "fragment in absolute-form", raw: "GET http://a/#b HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "100 fields", raw: wiretest.ManyFields(testMaxFields - 1)},
	{name: "101 fields", raw: wiretest.ManyFields(testMaxFields)},
	{name: "WebSocket handshake", raw: wiretest.Handshake("/ws")},
	{name: "WebSocket, lower-case tokens", raw: "GET /ws HTTP/1.1\r\nHost: a\r\nconnection: keep-alive, upgrade\r\nupgrade: WebSocket\r\nsec-websocket-key: " + wiretest.Key + "\r\nsec-websocket-version: 13\r\n\r\n"},
	{name: "WebSocket, key not base64", raw: strings.Replace(wiretest.Handshake("/"), wiretest.Key, "dGhlIHNhbXBsZSBub25jZQ!!", 1)},
	{name: "WebSocket, key of 17 bytes", raw: strings.Replace(wiretest.Handshake("/"), wiretest.Key, "dGhlIHNhbXBsZSBub25jZQ==AA==", 1)},
	{name: "WebSocket, key with nonzero padding bits", raw: strings.Replace(wiretest.Handshake("/"), wiretest.Key, "dGhlIHNhbXBsZSBub25jZR==", 1)},
	{name: "WebSocket, two keys", raw: strings.Replace(wiretest.Handshake("/"), "\r\n\r\n", "\r\nSec-WebSocket-Key: "+wiretest.Key+"\r\n\r\n", 1)},
	{name: "WebSocket, no key", raw: strings.Replace(wiretest.Handshake("/"), "Sec-WebSocket-Key: "+wiretest.Key+"\r\n", "", 1)},
	{name: "WebSocket, version 8", raw: strings.Replace(wiretest.Handshake("/"), "Version: 13", "Version: 8", 1)},
	{name: "WebSocket, versions 13 and 8", raw: strings.Replace(wiretest.Handshake("/"), "Version: 13", "Version: 13, 8", 1)},
	{name: "WebSocket, POST", raw: strings.Replace(wiretest.Handshake("/"), "GET", "POST", 1)},
	{name: "WebSocket in HTTP/1.0", raw: strings.Replace(wiretest.Handshake("/"), "HTTP/1.1", "HTTP/1.0", 1)},
	{name: "Upgrade: websocket without Connection: upgrade", raw: strings.Replace(wiretest.Handshake("/"), "Connection: Upgrade", "Connection: keep-alive", 1)},
	{name: "Upgrade: h2c", raw: "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"},

	{response: true, name: "200 with CL", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"},
	{response: true, name: "200 without CL or TE", raw: "HTTP/1.1 200 OK\r\n\r\nuntil close"},
	{response: true, name: "200 chunked", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{response: true, name: "200 with CL and TE", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{response: true, name: "200 TE `gzip`", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"},
	{response: true, name: "200 TE in HTTP/1.0", raw: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{response: true, name: "200 HTTP/1.0 with CL", raw: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"},
	{response: true, name: "200 Connection: close", raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"},
	{response: true, name: "200 two identical CLs", raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi"},
	{response: true, name: "200 two differing CLs", raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!"},
	{response: true, name: "200 without reason", raw: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"},
	{response: true, name: "200 leading CRLF", raw: "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
	{response: true, name: "204 with CL", raw: "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"},
	{response: true, name: "304 with CL", raw: "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"},
	{response: true, name: "101 Switching Protocols", raw: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
	{response: true, name: "100 Continue", raw: "HTTP/1.1 100 Continue\r\n\r\n"},
	{response: true, head: true, name: "200 to HEAD with CL", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"},
	{response: true, name: "bare LF line ends", raw: "HTTP/1.1 200 OK\nContent-Length: 0\n\n"},
	{response: true, name: "space before colon", raw: "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello"},
	{response: true, name: "obs-fold", raw: "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
	{response: true, name: "status 099", raw: "HTTP/1.1 099 X\r\nContent-Length: 0\r\n\r\n"},
	{response: true, name: "status 600", raw: "HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n"},
	{response: true, name: "status 2000", raw: "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"},
	{response: true, name: "HTTP/2 status line", raw: "HTTP/2 200\r\nContent-Length: 0\r\n\r\n"},
	{response: true, name: "NUL in value", raw: "HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n"},
}

// fasthttpRequestResult feeds raw to a fasthttp RequestHeader alone.
func fasthttpRequestResult(raw string, rawMode bool) string {
	var h fasthttp.RequestHeader
	if rawMode {
		h.DisableSpecialHeader()
	}
	if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		return "reject"
	}
	if rawMode {
		return "accept"
	}
	return "accept, " + fasthttpLength(h.ContentLength(), "no body")
}

func fasthttpResponseResult(raw string) string {
	var h fasthttp.ResponseHeader
	if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		return "reject"
	}
	return "accept, " + fasthttpLength(h.ContentLength(), "until close")
}

func fasthttpLength(n int, none string) string {
	switch n {
	case -1:
		return "chunked"
	case -2:
		return none
	}
	return "CL " + strconv.Itoa(n)
}

// tetherResult describes what tether makes of raw: the status it answers
// and why, or the framing it reads.
func tetherResult(c framingCase) string {
	br := bufio.NewReaderSize(strings.NewReader(c.raw), testMaxHead)
	var fr Framing
	var err error
	if c.response {
		fr, err = ReadResponseHead(br, &AnswerHead{}, testMaxHead, c.head)
	} else {
		fr, err = ReadRequestHead(br, NewRequestHeader(), testMaxHead, testMaxFields)
	}
	if err != nil {
		return errorResult(err)
	}
	return "ok, " + framingResult(fr, c.response)
}

func errorResult(err error) string {
	status := "?"
	switch {
	case err == ErrTooManyFields:
		return "431: " + string(faultFields)
	case errors.Is(err, ErrHeadTooLarge):
		return "431"
	case errors.Is(err, ErrBadRequest):
		status = "400"
	case errors.Is(err, ErrBadResponse):
		status = "502"
	default:
		return "error: " + err.Error()
	}
	var f Fault
	if errors.As(err, &f) {
		return status + ": " + string(f)
	}
	return status + ": " + err.Error()
}

func framingResult(fr Framing, response bool) string {
	var s string
	switch {
	case fr.NoBody:
		s = "no body"
	case fr.Chunked:
		s = "chunked"
	case fr.Length >= 0:
		s = "CL " + strconv.FormatInt(fr.Length, 10)
	case response:
		s = "until close"
	default:
		s = "no body"
	}
	if fr.CloseAfter {
		s += ", close"
	}
	if fr.Upgrade {
		s += ", WebSocket"
	}
	return s
}

// framingRow renders a case as its FRAMING.md table row.
func framingRow(c framingCase) string {
	kind, ft, raw := "request", fasthttpRequestResult(c.raw, false), fasthttpRequestResult(c.raw, true)
	if c.response {
		kind, ft, raw = "response", fasthttpResponseResult(c.raw), "—"
		if c.head {
			kind = "response to HEAD"
		}
	}
	return fmt.Sprintf("| %s: %s | %s | %s | %s |", kind, c.name, ft, raw, tetherResult(c))
}

const (
	framingBegin = "<!-- framing table: begin -->"
	framingEnd   = "<!-- framing table: end -->"
)

// TestFramingTable checks the table in FRAMING.md row by row against what
// fasthttp alone and tether do with each case. Run with -update-framing to
// rewrite it.
func TestFramingTable(t *testing.T) {
	doc, err := os.ReadFile("FRAMING.md")
	if err != nil {
		t.Fatal(err)
	}
	begin, end := bytes.Index(doc, []byte(framingBegin)), bytes.Index(doc, []byte(framingEnd))
	if begin < 0 || end < begin {
		t.Fatalf("FRAMING.md lacks the %q and %q markers", framingBegin, framingEnd)
	}
	var want strings.Builder
	want.WriteString(framingBegin + "\n")
	want.WriteString("| case | fasthttp | fasthttp, DisableSpecialHeader | tether |\n")
	want.WriteString("|---|---|---|---|\n")
	for _, c := range framingCases {
		want.WriteString(framingRow(c) + "\n")
	}
	if *updateFraming {
		out := append(append(append([]byte{}, doc[:begin]...), want.String()...), doc[end:]...)
		if err := os.WriteFile("FRAMING.md", out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have := map[string]string{}
	for line := range strings.Lines(string(doc[begin:end])) {
		line = strings.TrimSpace(line)
		if cells := strings.Split(line, " | "); len(cells) == 4 {
			have[cells[0]] = line
		}
	}
	for _, c := range framingCases {
		row := framingRow(c)
		key := strings.Split(row, " | ")[0]
		if have[key] != row {
			t.Errorf("FRAMING.md row differs (go test -run Framing -update-framing rewrites it)\n have: %s\n want: %s", have[key], row)
		}
		delete(have, key)
	}
	for key := range have {
		if !strings.HasPrefix(key, "| case") && !strings.HasPrefix(key, "|---") {
			t.Errorf("FRAMING.md row without a test case: %s", key)
		}
	}
}
