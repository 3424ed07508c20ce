package wire

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

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
		fr, err = ReadResponseHead(br, NewResponseHeader(), testMaxHead, c.head)
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

// TestHeadRequestFraming spells out the ambiguous request cases by name,
// so a change of verdict shows here as well as in FRAMING.md.
func TestHeadRequestFraming(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		"CL then TE":                  "400: " + string(faultTECL),
		"TE then CL":                  "400: " + string(faultTECL),
		"CL on two differing lines":   "400: " + string(faultCLs),
		"CL on two identical lines":   "ok, CL 5",
		"TE `gzip, chunked`":          "400: " + string(faultTE),
		"TE `chunked, chunked`":       "400: " + string(faultTE),
		"TE `xchunked`":               "400: " + string(faultTE),
		"TE chunked on two lines":     "400: " + string(faultTE),
		"TE in HTTP/1.0":              "400: " + string(faultTE10),
		"space inside name":           "400: " + string(faultNameSpace),
		"control byte in name":        "400: " + string(faultName),
		"space before colon":          "400: " + string(faultNameSpace),
		"obs-fold":                    "400: " + string(faultObsFold),
		"bare LF after a field":       "400: " + string(faultBareLF),
		"bare CR in a value":          "400: " + string(faultBareCR),
		"NUL in value":                "400: " + string(faultValue),
		"HTTP/1.1 without Host":       "400: " + string(faultNoHost),
		"two Hosts":                   "400: " + string(faultHosts),
		"CL overflows int64":          "400: " + string(faultCL),
		"one leading CRLF":            "ok, no body",
		"chunked POST":                "ok, chunked",
		"HTTP/1.0 without Host":       "ok, no body, close",
		"Transfer_Encoding":           "400: " + string(faultUnderscore),
		"TE `identity` with CL":       "400: " + string(faultTE),
		"Trailer: Content-Length":     "400: " + string(faultTrailerField),
		"obs-fold of Content-Length":  "400: " + string(faultCL),
		"CL list `5, 5`":              "400: " + string(faultCL),
		"HTTP/2 preface":              "400: " + string(faultVersion),
		"absolute-form with userinfo": "400: " + string(faultTarget),
		"fragment in target":          "400: " + string(faultFragment),
		"101 fields":                  "431: " + string(faultFields),
		"WebSocket handshake":         "ok, no body, WebSocket",
		"WebSocket, key not base64":   "400: " + string(faultWSKey),
		"WebSocket, version 8":        "400: " + string(faultWSVersion),
		"WebSocket, POST":             "400: " + string(faultWSRequest),
		"Upgrade: h2c":                "ok, no body",
	}
	for _, c := range framingCases {
		w, ok := want[c.name]
		if c.response || !ok {
			continue
		}
		delete(want, c.name)
		t.Run(c.name, func(t *testing.T) {
			if got := tetherResult(c); got != w {
				t.Errorf("got %q, want %q", got, w)
			}
		})
	}
	for name := range want {
		t.Errorf("no case named %q", name)
	}
}

// TestHeadPipelined reads heads sent back to back in one buffer.
func TestHeadPipelined(t *testing.T) {
	t.Parallel()
	raw := "GET /a HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz" +
		"\r\n" + // a stray CRLF after a body, as old clients send
		"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"GET /d HTTP/1.1\r\nHost: a\r\n\r\n"
	br := bufio.NewReaderSize(strings.NewReader(raw), testMaxHead)
	h := NewRequestHeader()
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	buf := make([]byte, 16)
	for _, want := range []struct {
		uri  string
		body string
	}{{"/a", ""}, {"/b", "xyz"}, {"/c", "3\r\nabc\r\n0\r\n\r\n"}, {"/d", ""}} {
		fr, err := ReadRequestHead(br, h, testMaxHead, testMaxFields)
		if err != nil {
			t.Fatalf("%s: %v", want.uri, err)
		}
		if got := string(h.RequestURI()); got != want.uri {
			t.Fatalf("read %s, want %s", got, want.uri)
		}
		out.Reset()
		if _, err := CopyBody(bw, br, fr, buf, true); err != nil {
			t.Fatalf("%s body: %v", want.uri, err)
		}
		bw.Flush()
		if out.String() != want.body {
			t.Errorf("%s body %q, want %q", want.uri, out.String(), want.body)
		}
	}
	if _, err := ReadRequestHead(br, h, testMaxHead, testMaxFields); err != io.EOF {
		t.Fatalf("after the last head: %v, want io.EOF", err)
	}
}

// TestHeadSlowReader reads heads that arrive one byte at a time.
func TestHeadSlowReader(t *testing.T) {
	t.Parallel()
	for _, c := range framingCases {
		t.Run(c.name, func(t *testing.T) {
			want := tetherResult(c)
			br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(c.raw)), testMaxHead)
			var fr Framing
			var err error
			if c.response {
				fr, err = ReadResponseHead(br, NewResponseHeader(), testMaxHead, c.head)
			} else {
				fr, err = ReadRequestHead(br, NewRequestHeader(), testMaxHead, testMaxFields)
			}
			got := "ok, " + framingResult(fr, c.response)
			if err != nil {
				got = errorResult(err)
			}
			if got != want {
				t.Errorf("byte by byte: %q, in one read: %q", got, want)
			}
		})
	}
}

// TestHeadMaxSize accepts a head of exactly maxHead bytes and refuses one
// more, counting leading empty lines.
func TestHeadMaxSize(t *testing.T) {
	t.Parallel()
	const maxHead = 256
	head := func(size int, prefix string) string {
		s := prefix + "GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n"
		pad := strings.Repeat("x", size-len(s))
		return strings.Replace(s, "X: ", "X: "+pad, 1)
	}
	for _, c := range []struct {
		name string
		raw  string
		want error
	}{
		{"exactly maxHead", head(maxHead, ""), nil},
		{"maxHead+1", head(maxHead+1, ""), ErrHeadTooLarge},
		{"maxHead with leading CRLF", head(maxHead, "\r\n"), nil},
		{"maxHead+1 with leading CRLF", head(maxHead+1, "\r\n"), ErrHeadTooLarge},
		{"only CRLFs", strings.Repeat("\r\n", maxHead), ErrHeadTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(c.raw+"GET / HTTP/1.1\r\n"), maxHead)
			_, err := ReadRequestHead(br, NewRequestHeader(), maxHead, testMaxFields)
			if err != c.want {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// timeoutErr is a net.Error reporting a timeout.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestHeadEnds checks what the end of the stream or a read error gives.
func TestHeadEnds(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		r    io.Reader
		want error
	}{
		{"nothing", strings.NewReader(""), io.EOF},
		{"only CRLF", strings.NewReader("\r\n\r\n"), io.EOF},
		{"lone CR", strings.NewReader("\r"), io.EOF},
		{"half a head", strings.NewReader("GET / HTTP/1.1\r\nHo"), io.ErrUnexpectedEOF},
		{"timeout before a byte", iotest.ErrReader(timeoutErr{}), timeoutErr{}},
		{"timeout inside a head", io.MultiReader(strings.NewReader("GET / HT"), iotest.ErrReader(timeoutErr{})), timeoutErr{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			br := bufio.NewReaderSize(c.r, testMaxHead)
			_, err := ReadRequestHead(br, NewRequestHeader(), testMaxHead, testMaxFields)
			if err != c.want {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			_, err = ReadResponseHead(bufio.NewReaderSize(strings.NewReader(""), testMaxHead), NewResponseHeader(), testMaxHead, false)
			if err != io.EOF {
				t.Fatalf("response on an empty stream: %v, want io.EOF", err)
			}
		})
	}
}

// TestHeadRawMode checks what forwarding relies on in DisableSpecialHeader
// mode: the head round-trips in wire order, Host and Cookie read back,
// DelBytes matches names case-insensitively, and added fields go last.
func TestHeadRawMode(t *testing.T) {
	t.Parallel()
	wire := strings.Replace(wiretest.BrowserHead, "Accept-Language:", "accept-LANGUAGE:", 1)
	h := NewRequestHeader()
	if _, err := ReadRequestHead(bufio.NewReaderSize(strings.NewReader(wire), testMaxHead), h, testMaxHead, testMaxFields); err != nil {
		t.Fatal(err)
	}
	if got := string(h.AppendBytes(nil)); got != wiretest.BrowserHead {
		t.Fatalf("AppendBytes:\n%s\nwant the head as received, names in canonical case:\n%s", got, wiretest.BrowserHead)
	}
	if got := string(h.Peek("host")); got != "cobrowse.example.com" {
		t.Errorf("Peek(host) = %q", got)
	}
	if got := h.PeekAll("cookie"); len(got) != 2 || string(got[1]) != "consent=yes" {
		t.Errorf("PeekAll(cookie) = %q", got)
	}
	h.DelBytes([]byte("CONNECTION"))
	h.DelBytes([]byte("sec-fetch-mode"))
	h.SetBytesKV([]byte("x-forwarded-proto"), []byte("https"))
	h.AddBytesKV([]byte("X-Forwarded-For"), []byte("192.0.2.1"))
	want := strings.Replace(wiretest.BrowserHead, "Connection: keep-alive\r\n", "", 1)
	want = strings.Replace(want, "Sec-Fetch-Mode: cors\r\n", "", 1)
	want = strings.TrimSuffix(want, "\r\n") + "X-Forwarded-Proto: https\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n"
	if got := string(h.AppendBytes(nil)); got != want {
		t.Fatalf("after edits:\n%s\nwant:\n%s", got, want)
	}

	// Reusing h for the next request keeps nothing of the first.
	next := "POST /cobrowse/send HTTP/1.1\r\nHost: b\r\nContent-Length: 2\r\n\r\n"
	if _, err := ReadRequestHead(bufio.NewReaderSize(strings.NewReader(next+"hi"), testMaxHead), h, testMaxHead, testMaxFields); err != nil {
		t.Fatal(err)
	}
	if got := string(h.AppendBytes(nil)); got != next {
		t.Fatalf("reused header:\n%q\nwant:\n%q", got, next)
	}

	// Reset leaves raw mode; ReadRequestHead restores it.
	h.Reset()
	if _, err := ReadRequestHead(bufio.NewReaderSize(strings.NewReader(wiretest.BrowserHead), testMaxHead), h, testMaxHead, testMaxFields); err != nil {
		t.Fatal(err)
	}
	if got := string(h.AppendBytes(nil)); got != wiretest.BrowserHead {
		t.Fatalf("after Reset:\n%s", got)
	}
}

// TestHeadCookieHazard pins the fasthttp behaviour NewRequestHeader warns
// about: reading cookies through the cookie API moves the Cookie lines out
// of the list, and AppendBytes in raw mode then drops them.
func TestHeadCookieHazard(t *testing.T) {
	t.Parallel()
	h := NewRequestHeader()
	if _, err := ReadRequestHead(bufio.NewReaderSize(strings.NewReader(wiretest.BrowserHead), testMaxHead), h, testMaxHead, testMaxFields); err != nil {
		t.Fatal(err)
	}
	if v := h.Cookie("gcbSessionServer"); string(v) != "CB_Server_1" {
		t.Fatalf("Cookie = %q", v)
	}
	if bytes.Contains(h.AppendBytes(nil), []byte("Cookie:")) {
		t.Fatal("fasthttp now keeps collected cookies in raw mode: the warning on NewRequestHeader can go")
	}
}

// TestHeadDuplicateContentLength forwards one Content-Length line for
// repeated identical ones.
func TestHeadDuplicateContentLength(t *testing.T) {
	t.Parallel()
	raw := "POST / HTTP/1.1\r\nContent-Length: 5\r\nHost: a\r\ncontent-length: 5\r\nX: y\r\nContent-Length: 5\r\n\r\nhello"
	br := bufio.NewReaderSize(strings.NewReader(raw), testMaxHead)
	h := NewRequestHeader()
	fr, err := ReadRequestHead(br, h, testMaxHead, testMaxFields)
	if err != nil {
		t.Fatal(err)
	}
	if fr.Length != 5 {
		t.Fatalf("length %d", fr.Length)
	}
	want := "POST / HTTP/1.1\r\nContent-Length: 5\r\nHost: a\r\nX: y\r\n\r\n"
	if got := string(h.AppendBytes(nil)); got != want {
		t.Fatalf("forwarded head %q, want %q", got, want)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "hello" {
		t.Fatalf("left %q after the head", rest)
	}
	many := "POST / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("Content-Length: 5\r\n", maxDupCL+2) + "\r\n"
	if _, err := ReadRequestHead(bufio.NewReaderSize(strings.NewReader(many), testMaxHead), h, testMaxHead, testMaxFields); !errors.Is(err, faultCLMany) {
		t.Fatalf("many lines: %v", err)
	}
}

// TestHeadResponses checks the body rules of responses and what the
// response header keeps.
func TestHeadResponses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		raw  string
		head bool
		want Framing
	}{
		{"204", "HTTP/1.1 204 No Content\r\n\r\n", false, Framing{NoBody: true}},
		{"304 chunked", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", false, Framing{NoBody: true}},
		{"103", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", false, Framing{NoBody: true}},
		{"HEAD chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, Framing{NoBody: true}},
		{"until close", "HTTP/1.1 200 OK\r\n\r\n", false, Framing{Length: -1, CloseAfter: true}},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", false, Framing{Length: 1}},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n", false, Framing{Chunked: true, Length: -1}},
		{"CL and TE", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n", false, Framing{Chunked: true, Length: -1, CloseAfter: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := NewResponseHeader()
			fr, err := ReadResponseHead(bufio.NewReaderSize(strings.NewReader(c.raw), testMaxHead), h, testMaxHead, c.head)
			if err != nil {
				t.Fatal(err)
			}
			if fr != c.want {
				t.Fatalf("Framing %+v, want %+v", fr, c.want)
			}
		})
	}
}

// TestHeadValueBytes checks the word-at-a-time value scan against the
// byte table: every byte value at every position of a 17-byte value.
func TestHeadValueBytes(t *testing.T) {
	t.Parallel()
	v := make([]byte, 17)
	for c := range 256 {
		for pos := range v {
			for i := range v {
				v[i] = 'a' + byte(i)
			}
			v[pos] = byte(c)
			want := -1
			if headChars[c]&hcValue == 0 {
				want = c
			}
			if got := invalidValueByte(v); got != want {
				t.Fatalf("byte %#x at %d: got %d, want %d", c, pos, got, want)
			}
		}
	}
}

// TestHeadMaxFields accepts maxFields fields, Host included, and refuses
// one more with ErrTooManyFields (a 431, without growing the reader).
func TestHeadMaxFields(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		fields int
		want   error
	}{{testMaxFields - 1, nil}, {testMaxFields, ErrTooManyFields}} {
		br := bufio.NewReaderSize(strings.NewReader(wiretest.ManyFields(c.fields)), testMaxHead)
		_, err := ReadRequestHead(br, NewRequestHeader(), testMaxHead, testMaxFields)
		if err != c.want {
			t.Errorf("%d fields and Host: %v, want %v", c.fields, err, c.want)
		}
	}
	br := bufio.NewReaderSize(strings.NewReader(wiretest.ManyFields(testMaxFields)), testMaxHead)
	if _, err := ReadRequestHead(br, NewRequestHeader(), testMaxHead, 0); err != nil {
		t.Errorf("no limit: %v", err)
	}
}
