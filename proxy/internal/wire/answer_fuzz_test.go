package wire

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"

	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
)

// FuzzReadResponseHead checks the answer head, which no second parser
// reads, against net/http. When tether accepts a head, http.ReadResponse
// reads it too, to the same length, with the same status code and body
// framing (Content-Length, chunked, no body). The head Relay makes of it
// parses again, with http.ReadResponse and tether's own scan, to the same
// status and framing, and holds the same fields (as net/textproto reads
// them) less those Relay leaves out, and the Connection field it adds.
// conn picks that field; head says the request was HEAD.
func FuzzReadResponseHead(f *testing.F) {
	for _, c := range framingCases {
		if c.response {
			f.Add([]byte(c.raw), c.head, byte(0))
		}
	}
	f.Add([]byte(wiretest.Switched(wiretest.Key)), false, byte(0))
	f.Add([]byte("HTTP/1.1 200 OK\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\nKeep-Alive: 5\r\nContent-Length: 2\r\n\r\nok"), false, byte(1))
	f.Add([]byte("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), false, byte(0))
	f.Fuzz(func(t *testing.T, data []byte, head bool, connPick byte) {
		r := bytes.NewReader(data)
		br := bufio.NewReaderSize(r, testMaxHead)
		var a AnswerHead
		fr, err := ReadResponseHead(br, &a, testMaxHead, head)
		if err != nil {
			return
		}
		start := len(data) - r.Len() - br.Buffered() // leading empty lines skipped
		raw := data[start : start+a.end]

		var req *http.Request
		if head {
			req = &http.Request{Method: "HEAD"}
		}
		resp := readNetHTTP(t, data[start:], req, a.end)
		if resp.StatusCode != a.Status() {
			t.Fatalf("net/http status %d, tether %d\n%q", resp.StatusCode, a.Status(), raw)
		}
		checkAnswerFraming(t, resp, fr, raw, "node's head")

		conn := ConnNone
		if a.Status() >= 200 && a.Status() != 101 {
			conn = ConnField(connPick % 3)
		}
		rel := a.Relay(nil, br, conn)
		if rest := len(data) - start - a.end; br.Buffered()+r.Len() != rest {
			t.Fatalf("Relay left %d bytes, want the %d after the head", br.Buffered()+r.Len(), rest)
		}

		// The relayed head reads the same, for net/http and tether.
		resp2 := readNetHTTP(t, rel, req, len(rel))
		if resp2.StatusCode != a.Status() || resp2.ProtoMinor != 1 || len(resp2.Status) <= len("200 ") {
			t.Fatalf("relayed status %q %s, tether %d\n%q", resp2.Status, resp2.Proto, a.Status(), rel)
		}
		if !(conn == ConnClose || fr.CloseAfter && !fr.Chunked) && resp2.Close {
			t.Fatalf("the relayed head closes the client connection\n%q", rel)
		}
		if conn == ConnClose && !resp2.Close {
			t.Fatalf("the relayed head does not close the client connection\n%q", rel)
		}
		checkAnswerFraming(t, resp2, fr, rel, "relayed head")
		var a2 AnswerHead
		fr2, err := ReadResponseHead(bufio.NewReader(bytes.NewReader(rel)), &a2, testMaxHead, head)
		if err != nil || a2.Status() != a.Status() || a2.end != len(rel) ||
			fr2.NoBody != fr.NoBody || fr2.Chunked != fr.Chunked || fr2.Length != fr.Length {
			t.Fatalf("tether reads the relayed head as %+v %v, the node's as %+v\n%q", fr2, err, fr, rel)
		}

		// Same fields, less the ones left out.
		want := mimeFields(t, raw)
		dropOut(want, fr, a.Status())
		switch conn {
		case ConnClose:
			want["Connection"] = []string{"close"}
		case ConnKeepAlive:
			want["Connection"] = []string{"keep-alive"}
		}
		if got := mimeFields(t, rel); !reflect.DeepEqual(got, want) {
			t.Fatalf("relayed fields\n%q\nwant\n%q\nnode's head %q\nrelayed %q", got, want, raw, rel)
		}
	})
}

// readNetHTTP reads an answer from data with http.ReadResponse, which must
// accept it and consume headLen bytes.
func readNetHTTP(t *testing.T, data []byte, req *http.Request, headLen int) *http.Response {
	t.Helper()
	r := bytes.NewReader(data)
	br := bufio.NewReader(r)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("net/http refuses a head tether accepts or relays: %v\n%q", err, data)
	}
	if n := len(data) - r.Len() - br.Buffered(); n != headLen {
		t.Fatalf("net/http reads a %d-byte head, tether %d\n%q", n, headLen, data)
	}
	return resp
}

// checkAnswerFraming requires net/http's reading of a head to frame the
// body as fr does.
func checkAnswerFraming(t *testing.T, resp *http.Response, fr Framing, raw []byte, what string) {
	t.Helper()
	chunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"
	var ok bool
	switch {
	case fr.NoBody:
		ok = resp.Body == http.NoBody
	case fr.Chunked:
		ok = chunked && resp.Body != http.NoBody
	case fr.Length >= 0:
		ok = !chunked && resp.ContentLength == fr.Length
	default: // until the node closes
		ok = !chunked && resp.ContentLength == -1 && resp.Close
	}
	if !ok {
		t.Fatalf("%s: net/http reads chunked=%v Content-Length %d no body=%v close=%v, tether %+v\n%q",
			what, chunked, resp.ContentLength, resp.Body == http.NoBody, resp.Close, fr, raw)
	}
}

// mimeFields reads the fields of a head as net/textproto does for
// net/http.
func mimeFields(t *testing.T, head []byte) map[string][]string {
	t.Helper()
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(head)))
	if _, err := tr.ReadLine(); err != nil {
		t.Fatal(err)
	}
	h, err := tr.ReadMIMEHeader()
	if err != nil && err != io.EOF {
		t.Fatalf("net/textproto: %v\n%q", err, head)
	}
	return h
}

// dropOut removes from h, the fields of a node's head, what Relay leaves
// out, as a model written apart from it.
func dropOut(h map[string][]string, fr Framing, status int) {
	if cl := h["Content-Length"]; len(cl) > 1 {
		h["Content-Length"] = cl[:1] // identical repeats: the scan refuses others
	}
	if status == 101 {
		return
	}
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			name = textproto.CanonicalMIMEHeaderKey(strings.Trim(name, " \t"))
			switch name {
			case "Close", "Keep-Alive", "Content-Length", "Transfer-Encoding":
			default:
				delete(h, name)
			}
		}
	}
	for _, name := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Upgrade", "Te"} {
		delete(h, name)
	}
	if fr.Chunked {
		delete(h, "Content-Length")
		h["Transfer-Encoding"] = []string{"chunked"}
	}
}
