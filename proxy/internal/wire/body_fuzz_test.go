package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http/httputil"
	"strings"
	"testing"
)

// splitReader returns data in pieces whose sizes come from splits, so a
// body arrives cut at arbitrary points.
type splitReader struct {
	data   []byte
	splits []byte
}

func (r *splitReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(r.data)
	if len(r.splits) > 0 {
		n = int(r.splits[0]) + 1
		r.splits = r.splits[1:]
	}
	n = min(n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// chunkedRun copies a chunked body from r and reports what came out.
func chunkedRun(r io.Reader, bufSize int) (out []byte, n int64, err error) {
	var b bytes.Buffer
	dst := bufio.NewWriterSize(&b, 32)
	n, err = CopyBody(dst, bufio.NewReaderSize(r, testMaxHead), chunkedFraming, make([]byte, bufSize), true)
	dst.Flush()
	return b.Bytes(), n, err
}

// errorKind reduces an error to what must not depend on how bytes arrive.
func errorKind(err error) string {
	var f Fault
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &f):
		return string(f)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	}
	return err.Error()
}

// FuzzChunked checks CopyBody on chunked bodies: the same bytes and verdict
// however the input is cut; an accepted body decodes with net/http's
// chunked reader to the same payload, as does tether's output; and the
// output is canonical (copying it again changes nothing).
func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n",
		"000A;ext=1\r\n0123456789\r\n0\r\nX-Sum: 1\r\nContent-Length: 9\r\n\r\n",
		"5 \r\nhello\r\n0\r\n\r\n",
		"5\nhello\r\n0\r\n\r\n",
		"5\r\nhelloX\r\n0\r\n\r\n",
		"8000000000000000\r\n",
		"1;" + strings.Repeat("e", 200) + "\r\nx\r\n0\r\n\r\n",
		"0\r\nX: a\r\n b\r\n\r\n",
	} {
		f.Add([]byte(s), []byte{0, 1, 2, 7, 3})
	}
	f.Fuzz(func(t *testing.T, data, splits []byte) {
		out, n, err := chunkedRun(bytes.NewReader(data), 32<<10)
		out2, n2, err2 := chunkedRun(&splitReader{data: data, splits: splits}, 5)
		if !bytes.Equal(out, out2) || n != n2 || errorKind(err) != errorKind(err2) {
			t.Fatalf("split input differs: %q %d %v, in one read %q %d %v", out2, n2, err2, out, n, err)
		}
		if err != nil {
			return
		}
		payload, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(data)))
		if err != nil {
			if strings.Contains(err.Error(), "too much non-data") {
				return // net/http's guard against heavy extensions; tether drops them
			}
			t.Fatalf("net/http refuses a body tether accepts: %v\n%q", err, data)
		}
		if int64(len(payload)) != n {
			t.Fatalf("net/http decodes %d bytes, tether %d", len(payload), n)
		}
		decoded, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(out)))
		if err != nil || !bytes.Equal(decoded, payload) {
			t.Fatalf("output decodes to %q (%v), input to %q", decoded, err, payload)
		}
		again, n3, err := chunkedRun(bytes.NewReader(out), 7)
		if err != nil || n3 != n || !bytes.Equal(again, out) {
			t.Fatalf("output is not canonical: %q -> %q (%v)", out, again, err)
		}
	})
}
