package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// bodyResult copies one body from r and returns what reached dst.
func bodyResult(r io.Reader, fr Framing, bufSize int, isRequest bool) (string, int64, error) {
	var out bytes.Buffer
	dst := bufio.NewWriterSize(&out, 64)
	src := bufio.NewReaderSize(r, testMaxHead)
	n, err := CopyBody(dst, src, fr, make([]byte, bufSize), isRequest)
	dst.Flush()
	return out.String(), n, err
}

var chunkedFraming = Framing{Chunked: true, Length: -1}

// TestChunkCases checks what CopyBody accepts in a chunked body and how it
// writes it out, in one read and byte by byte.
func TestChunkCases(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", maxChunkLine)
	manyTrailers := strings.Repeat("X-Pad: "+strings.Repeat("p", 1000)+"\r\n", 66)
	for _, c := range []struct {
		name string
		in   string
		out  string // on success
		n    int64
		err  error // Fault or io.ErrUnexpectedEOF
	}{
		{name: "one chunk", in: "5\r\nhello\r\n0\r\n\r\n", out: "5\r\nhello\r\n0\r\n\r\n", n: 5},
		{name: "several chunks", in: "3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n", out: "3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n", n: 4},
		{name: "upper-case hex, leading zeros", in: "000A\r\n0123456789\r\n0\r\n\r\n", out: "a\r\n0123456789\r\n0\r\n\r\n", n: 10},
		{name: "16 hex digits", in: "0000000000000005\r\nhello\r\n0\r\n\r\n", out: "5\r\nhello\r\n0\r\n\r\n", n: 5},
		{name: "extensions dropped", in: "5;name=val\r\nhello\r\n0;last\r\n\r\n", out: "5\r\nhello\r\n0\r\n\r\n", n: 5},
		{name: "quoted extension", in: "5;a=\"b c\"\r\nhello\r\n0\r\n\r\n", out: "5\r\nhello\r\n0\r\n\r\n", n: 5},
		{name: "empty body", in: "0\r\n\r\n", out: "0\r\n\r\n"},
		{name: "trailers forwarded", in: "1\r\nx\r\n0\r\nX-Sum: abc\r\nserver-timing: db;dur=53\r\n\r\n", out: "1\r\nx\r\n0\r\nX-Sum: abc\r\nserver-timing: db;dur=53\r\n\r\n", n: 1},
		{name: "framing trailers dropped", in: "0\r\nContent-Length: 5\r\nX-Sum: 1\r\nX-Forwarded-For: 192.0.2.1\r\nhost: evil\r\n\r\n", out: "0\r\nX-Sum: 1\r\n\r\n"},
		{name: "bytes after the body stay", in: "0\r\n\r\nGET / HTTP/1.1\r\n", out: "0\r\n\r\n"},

		{name: "empty size", in: "\r\nhello\r\n0\r\n\r\n", err: faultChunkSize},
		{name: "non-hex size", in: "g\r\nhello\r\n0\r\n\r\n", err: faultChunkSize},
		{name: "negative size", in: "-5\r\nhello\r\n0\r\n\r\n", err: faultChunkSize},
		{name: "0x prefix", in: "0x5\r\nhello\r\n0\r\n\r\n", err: faultChunkSize},
		{name: "space after size", in: "5 \r\nhello\r\n0\r\n\r\n", err: faultChunkSize},
		{name: "space before extension", in: "5 ;x\r\nhello\r\n0\r\n\r\n", err: faultChunkSize},
		{name: "17 hex digits", in: "00000000000000005\r\nhello\r\n0\r\n\r\n", err: faultChunkOverflow},
		{name: "size over int64", in: "8000000000000000\r\nhello\r\n0\r\n\r\n", err: faultChunkOverflow},
		{name: "size line bare LF", in: "5\nhello\r\n0\r\n\r\n", err: faultBareLF},
		{name: "bare CR in extension", in: "5;a\rb\r\nhello\r\n0\r\n\r\n", err: faultBareCR},
		{name: "control byte in extension", in: "5;a\x01\r\nhello\r\n0\r\n\r\n", err: faultChunkExt},
		{name: "size line too long", in: "5;" + long + "\r\nhello\r\n0\r\n\r\n", err: faultChunkLine},
		{name: "data longer than size", in: "5\r\nhelloX\r\n0\r\n\r\n", err: faultChunkCRLF},
		{name: "bare LF after data", in: "5\r\nhello\n0\r\n\r\n", err: faultChunkCRLF},
		{name: "trailer obs-fold", in: "0\r\nX: a\r\n b\r\n\r\n", err: faultObsFold},
		{name: "trailer name with space", in: "0\r\nX Y: z\r\n\r\n", err: faultNameSpace},
		{name: "trailer bare LF", in: "0\r\nX: y\n\r\n", err: faultBareLF},
		{name: "trailer NUL", in: "0\r\nX: \x00\r\n\r\n", err: faultValue},
		{name: "trailer section too large", in: "0\r\n" + manyTrailers + "\r\n", err: faultTrailerSize},
		{name: "cut in size line", in: "5", err: io.ErrUnexpectedEOF},
		{name: "cut in data", in: "5\r\nhel", err: io.ErrUnexpectedEOF},
		{name: "cut before CRLF", in: "5\r\nhello", err: io.ErrUnexpectedEOF},
		{name: "cut before last chunk", in: "5\r\nhello\r\n", err: io.ErrUnexpectedEOF},
		{name: "cut in trailers", in: "0\r\nX: y\r\n", err: io.ErrUnexpectedEOF},
		{name: "no final CRLF", in: "0\r\n", err: io.ErrUnexpectedEOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, isRequest := range []bool{true, false} {
				for _, r := range []io.Reader{strings.NewReader(c.in), iotest.OneByteReader(strings.NewReader(c.in))} {
					out, n, err := bodyResult(r, chunkedFraming, 3, isRequest)
					if c.err == nil {
						if err != nil || out != c.out || n != c.n {
							t.Fatalf("got %q, %d, %v; want %q, %d", out, n, err, c.out, c.n)
						}
						continue
					}
					if !errors.Is(err, c.err) {
						t.Fatalf("error %v, want %v", err, c.err)
					}
					sentinel := ErrBadResponse
					if isRequest {
						sentinel = ErrBadRequest
					}
					if _, ok := c.err.(Fault); ok && !errors.Is(err, sentinel) {
						t.Fatalf("error %v does not wrap %v", err, sentinel)
					}
				}
			}
		})
	}
}

// TestBodyLength checks Content-Length and close-delimited bodies.
func TestBodyLength(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		in        string
		fr        Framing
		isRequest bool
		out       string
		err       error
	}{
		{"CL exact", "hello", Framing{Length: 5}, true, "hello", nil},
		{"CL leaves the rest", "hello world", Framing{Length: 5}, true, "hello", nil},
		{"CL cut short", "hel", Framing{Length: 5}, false, "hel", io.ErrUnexpectedEOF},
		{"CL 0", "hello", Framing{Length: 0}, true, "", nil},
		{"request without body", "hello", Framing{Length: -1}, true, "", nil},
		{"response until close", "hello world", Framing{Length: -1, CloseAfter: true}, false, "hello world", nil},
		{"no body", "hello", Framing{NoBody: true}, false, "", nil},
	} {
		for _, bufSize := range []int{0, 2, 32 << 10} {
			out, n, err := bodyResult(iotest.HalfReader(strings.NewReader(c.in)), c.fr, bufSize, c.isRequest)
			if out != c.out || n != int64(len(c.out)) || !errors.Is(err, c.err) {
				t.Errorf("%s, buf %d: got %q, %d, %v; want %q, %v", c.name, bufSize, out, n, err, c.out, c.err)
			}
		}
	}
}

// TestBodyReadError passes a read error through as it is.
func TestBodyReadError(t *testing.T) {
	t.Parallel()
	r := io.MultiReader(strings.NewReader("5\r\nhe"), iotest.ErrReader(timeoutErr{}))
	if _, _, err := bodyResult(r, chunkedFraming, 8, true); err != (timeoutErr{}) {
		t.Fatalf("got %v, want the timeout as it is", err)
	}
}

// notifyWriter records writes and signals each one.
type notifyWriter struct {
	buf   bytes.Buffer
	wrote chan string
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	w.wrote <- w.buf.String()
	return len(p), nil
}

// TestBodyFlushesBeforeWaiting checks that what arrived reaches dst while
// CopyBody waits for more: a chunked stream and a Content-Length body.
func TestBodyFlushesBeforeWaiting(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		fr     Framing
		first  string
		rest   string
		output string
	}{
		{"chunked", chunkedFraming, "5\r\nhello\r\n", "0\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n"},
		{"chunk cut in data", chunkedFraming, "a\r\nhello", "world\r\n0\r\n\r\n", "a\r\nhelloworld\r\n0\r\n\r\n"},
		{"length", Framing{Length: 10}, "hello", "world", "helloworld"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pr, pw := io.Pipe()
			w := &notifyWriter{wrote: make(chan string, 16)}
			dst := bufio.NewWriter(w)
			done := make(chan error, 1)
			go func() {
				_, err := CopyBody(dst, bufio.NewReader(pr), c.fr, make([]byte, 64), true)
				if err == nil {
					err = dst.Flush()
				}
				done <- err
			}()
			if _, err := pw.Write([]byte(c.first)); err != nil {
				t.Fatal(err)
			}
			want := c.output[:len(c.first)]
			select {
			case got := <-w.wrote:
				if got != want {
					t.Fatalf("flushed %q, want %q", got, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("nothing flushed while CopyBody waited")
			}
			pw.Write([]byte(c.rest))
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := w.buf.String(); got != c.output {
				t.Fatalf("output %q, want %q", got, c.output)
			}
		})
	}
}

// TestChunkSizeWriter checks the hex of writeChunkSize at its edges.
func TestChunkSizeWriter(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{1: "1", 15: "f", 16: "10", 0x7fffffffffffffff: "7fffffffffffffff", 0x100000: "100000"} {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		writeChunkSize(w, n)
		w.Flush()
		if out.String() != want+"\r\n" {
			t.Errorf("%d: %q", n, out.String())
		}
	}
}

// TestChunkedBodyLimit: a chunk that would take a chunked body past its
// limit is not copied; one that reaches it exactly is.
func TestChunkedBodyLimit(t *testing.T) {
	t.Parallel()
	in := "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"
	fr := Framing{Chunked: true, Length: -1, Limit: 5}
	out, n, err := bodyResult(strings.NewReader(in), fr, 16, true)
	if !errors.Is(err, ErrBodyTooLarge) || n != 3 || out != "3\r\nabc\r\n" {
		t.Fatalf("limit 5: %q, %d, %v; want the first chunk only and ErrBodyTooLarge", out, n, err)
	}
	fr.Limit = 6
	if out, n, err := bodyResult(strings.NewReader(in), fr, 16, true); err != nil || n != 6 || out != in {
		t.Fatalf("limit 6: %q, %d, %v; want the whole body", out, n, err)
	}
}
