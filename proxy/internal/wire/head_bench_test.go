//go:build !race

package wire

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
)

const benchMaxHead = 8 << 10

// BenchmarkHeadReadRequest reads a typical browser head with cookies, as
// tether does per request: strict scan, then fasthttp's parse.
func BenchmarkHeadReadRequest(b *testing.B) {
	r := strings.NewReader(wiretest.BrowserHead)
	br := bufio.NewReaderSize(r, benchMaxHead)
	h := NewRequestHeader()
	b.ReportAllocs()
	b.SetBytes(int64(len(wiretest.BrowserHead)))
	for b.Loop() {
		r.Reset(wiretest.BrowserHead)
		br.Reset(r)
		if _, err := ReadRequestHead(br, h, benchMaxHead, testMaxFields); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHeadReadRequestFasthttp is fasthttp's parse alone, the part of
// ReadRequestHead that is not tether's own scan.
func BenchmarkHeadReadRequestFasthttp(b *testing.B) {
	r := strings.NewReader(wiretest.BrowserHead)
	br := bufio.NewReaderSize(r, benchMaxHead)
	h := NewRequestHeader()
	b.ReportAllocs()
	b.SetBytes(int64(len(wiretest.BrowserHead)))
	for b.Loop() {
		r.Reset(wiretest.BrowserHead)
		br.Reset(r)
		if err := h.Read(br); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHeadReadRequestNetHTTP is the net/http baseline.
func BenchmarkHeadReadRequestNetHTTP(b *testing.B) {
	r := strings.NewReader(wiretest.BrowserHead)
	br := bufio.NewReaderSize(r, benchMaxHead)
	b.ReportAllocs()
	b.SetBytes(int64(len(wiretest.BrowserHead)))
	for b.Loop() {
		r.Reset(wiretest.BrowserHead)
		br.Reset(r)
		if _, err := http.ReadRequest(br); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHeadBodyAllocs requires ReadRequestHead, ReadResponseHead, Relay and
// CopyBody to allocate nothing in steady state, for a WebSocket handshake
// and an absolute-form target too.
func TestHeadBodyAllocs(t *testing.T) {
	request := []byte(wiretest.BrowserHead + wiretest.Handshake("/cobrowse/ws?session=1") +
		"GET http://cobrowse.example.com?session=1 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /cobrowse/send HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /cobrowse/send HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n")
	response := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/css\r\nSet-Cookie: gcbSessionServer=CB_Server_1; Path=/\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"a\r\n0123456789\r\n0\r\n\r\n" +
		"HTTP/1.1 200\r\nConnection: keep-alive, a, b, c, d, e, f, g, h, i, j\r\nKeep-Alive: 5\r\nj: 1\r\nX: 2\r\nContent-Length: 0\r\nA: 3\r\n\r\n")
	var r bytes.Reader
	br := bufio.NewReaderSize(&r, benchMaxHead)
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	buf := make([]byte, 32<<10)
	head := make([]byte, 0, 1024)
	req, resp := NewRequestHeader(), &AnswerHead{}
	run := func() {
		r.Reset(request)
		br.Reset(&r)
		out.Reset()
		bw.Reset(&out)
		for range 5 {
			fr, err := ReadRequestHead(br, req, benchMaxHead, testMaxFields)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := CopyBody(bw, br, fr, buf, true); err != nil {
				t.Fatal(err)
			}
		}
		r.Reset(response)
		br.Reset(&r)
		for range 2 {
			fr, err := ReadResponseHead(br, resp, benchMaxHead, false)
			if err != nil {
				t.Fatal(err)
			}
			bw.Write(resp.Relay(head[:0], br, ConnClose))
			if _, err := CopyBody(bw, br, fr, buf, false); err != nil {
				t.Fatal(err)
			}
		}
		bw.Flush()
	}
	run()
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Fatalf("%v allocations per run, want 0", n)
	}
}
