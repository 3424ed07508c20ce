package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
)

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
				fr, err = ReadResponseHead(br, &AnswerHead{}, testMaxHead, c.head)
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
			_, err = ReadResponseHead(bufio.NewReaderSize(strings.NewReader(""), testMaxHead), &AnswerHead{}, testMaxHead, false)
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

// TestHeadResponses checks the body rules of responses.
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
			fr, err := ReadResponseHead(bufio.NewReaderSize(strings.NewReader(c.raw), testMaxHead), &AnswerHead{}, testMaxHead, c.head)
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
