package wire

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
	"github.com/valyala/fasthttp"
)

// FuzzReadRequestHead checks ReadRequestHead against fasthttp alone and
// net/http. When tether accepts a head: fasthttp reads it to the same
// length, reading it again into the reused header gives the same result,
// net/http reads it with the same length and body framing, and the head
// tether forwards (AppendBytes) reads the same again, for tether and
// net/http, with an origin-form target. tether may refuse what net/http
// accepts, never the reverse. A WebSocket handshake is found exactly when
// net/http sees one complete by RFC 6455's rules (checkHandshake).
func FuzzReadRequestHead(f *testing.F) {
	for _, c := range framingCases {
		if !c.response {
			f.Add([]byte(c.raw))
		}
	}
	f.Add([]byte(wiretest.BrowserHead))
	f.Add([]byte("GET http://[::1]:8080/a?b HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"))
	f.Add([]byte("GET https://a.test?b#c HTTP/1.1\r\nHost: b\r\n\r\n"))
	f.Add([]byte("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum, Content-Type\r\n\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h := NewRequestHeader()
		fr, start, end, err := fuzzRead(h, data)
		if err != nil {
			switch {
			case errors.Is(err, ErrBadRequest), err == ErrHeadTooLarge, err == ErrTooManyFields, err == io.EOF, err == io.ErrUnexpectedEOF:
			default:
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		head := data[start:end]
		out := h.AppendBytes(nil)

		// fasthttp alone reads the same head to the same length (or
		// refuses repeated Content-Length lines, which tether collapses).
		var alone fasthttp.RequestHeader
		alone.DisableSpecialHeader()
		r := bufio.NewReader(bytes.NewReader(head))
		if err := alone.Read(r); err != nil {
			if !errors.Is(err, fasthttp.ErrDuplicateContentLength) {
				t.Fatalf("fasthttp alone refuses a head tether accepts: %v\n%q", err, head)
			}
		} else if r.Buffered() != 0 {
			t.Fatalf("fasthttp alone leaves %d bytes of the head", r.Buffered())
		}

		// Reading again into the reused header gives the same.
		fr2, start2, end2, err := fuzzRead(h, data)
		if err != nil || fr2 != fr || start2 != start || end2 != end || !bytes.Equal(h.AppendBytes(nil), out) {
			t.Fatalf("second read differs: %+v %v, first %+v", fr2, err, fr)
		}

		checkNetHTTP(t, data[start:], len(head), fr)
		checkHandshake(t, data[start:], fr)
		checkFields(t, data[start:], h, fr)

		// The forwarded head reads the same, for tether and net/http, and
		// its target is in origin form (or "*").
		if target := bytes.Fields(out)[1]; target[0] != '/' && string(target) != "*" || bytes.IndexByte(target, '#') >= 0 {
			t.Fatalf("forwarded target %q", target)
		}
		h3 := NewRequestHeader()
		fr3, start3, end3, err := fuzzRead(h3, out)
		if err != nil || fr3 != fr || start3 != 0 || end3 != len(out) {
			t.Fatalf("forwarded head reads differently: %+v %v, want %+v\n%q", fr3, err, fr, out)
		}
		if out3 := h3.AppendBytes(nil); !bytes.Equal(out3, out) {
			t.Fatalf("forwarded head is not stable:\n%q\n%q", out, out3)
		}
		checkNetHTTP(t, out, len(out), fr)
	})
}

// fuzzRead reads one head from data and returns where the head itself
// (leading empty lines excluded) starts and ends in data.
func fuzzRead(h *fasthttp.RequestHeader, data []byte) (fr Framing, start, end int, err error) {
	r := bytes.NewReader(data)
	br := bufio.NewReaderSize(r, testMaxHead)
	if fr, err = ReadRequestHead(br, h, testMaxHead, testMaxFields); err != nil {
		return fr, 0, 0, err
	}
	end = len(data) - r.Len() - br.Buffered()
	for start+1 < end && data[start] == '\r' && data[start+1] == '\n' {
		start += 2
	}
	return fr, start, end, nil
}

// checkNetHTTP requires net/http to read a head of headLen bytes from data
// with the framing tether found. data starts at the request line.
func checkNetHTTP(t *testing.T, data []byte, headLen int, fr Framing) {
	t.Helper()
	r := bytes.NewReader(data)
	br := bufio.NewReader(r)
	req, err := http.ReadRequest(br)
	if err != nil {
		t.Fatalf("net/http refuses a head tether accepts: %v\n%q", err, data)
	}
	if n := len(data) - r.Len() - br.Buffered(); n != headLen {
		t.Fatalf("net/http reads a %d-byte head, tether %d\n%q", n, headLen, data)
	}
	chunked := len(req.TransferEncoding) > 0
	length := req.ContentLength
	if !fr.Chunked && fr.Length < 0 {
		length = -1 // no body: net/http says 0
		if req.ContentLength != 0 {
			t.Fatalf("net/http sees a body of %d, tether none", req.ContentLength)
		}
	}
	if chunked != fr.Chunked || !chunked && length != fr.Length {
		t.Fatalf("net/http framing chunked=%v length=%d, tether %+v\n%q", chunked, req.ContentLength, fr, data)
	}
	if req.Close != fr.CloseAfter {
		t.Fatalf("net/http close=%v, tether %+v\n%q", req.Close, fr, data)
	}
}

// checkHandshake requires tether's verdict on a WebSocket handshake to be
// net/http's reading of the same head under RFC 6455 section 4.1: Connection
// lists upgrade and Upgrade lists websocket, in a GET in HTTP/1.1 with one
// Sec-WebSocket-Key decoding to 16 bytes and one Sec-WebSocket-Version, 13.
// (A head that says websocket and is not all of that is refused, so an
// accepted one is either a complete handshake or asks for no WebSocket.)
func checkHandshake(t *testing.T, data []byte, fr Framing) {
	t.Helper()
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		t.Fatal(err)
	}
	asks := hasTokenHTTP(req.Header["Connection"], "upgrade") && hasTokenHTTP(req.Header["Upgrade"], "websocket")
	keys, versions := req.Header["Sec-Websocket-Key"], req.Header["Sec-Websocket-Version"]
	complete := asks && req.Method == "GET" && req.ProtoMajor == 1 && req.ProtoMinor == 1 &&
		len(keys) == 1 && len(keys[0]) == 24 && len(versions) == 1 && versions[0] == "13"
	if complete {
		raw, err := base64.StdEncoding.DecodeString(keys[0])
		complete = err == nil && len(raw) == 16
	}
	if fr.Upgrade != complete || asks && !complete {
		t.Fatalf("tether upgrade=%v; net/http: asks for a WebSocket %v, complete handshake %v\n%q", fr.Upgrade, asks, complete, data)
	}
}

// hasTokenHTTP reports whether a comma-separated list in values holds tok,
// ignoring case.
func hasTokenHTTP(values []string, tok string) bool {
	for _, v := range values {
		for e := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(e), tok) {
				return true
			}
		}
	}
	return false
}
