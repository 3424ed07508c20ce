package wire

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
)

// Streaming a message body (RFC 9112 sections 6 and 7.1). A body is never
// held whole: it moves through the reader's buffer and a borrowed copy
// buffer. Chunked framing is checked as strictly as a head and written out
// again canonically, so the node reads the chunk boundaries tether read.

const (
	// maxChunkLine bounds a chunk-size line with its extensions and CRLF,
	// as net/http does.
	maxChunkLine = 4096
	// maxTrailerBytes bounds the trailer section.
	maxTrailerBytes = 64 << 10
)

// Chunked body faults, wrapped under ErrBadRequest or ErrBadResponse.
const (
	faultChunkSize     Fault = "invalid chunk size"
	faultChunkOverflow Fault = "chunk size overflow"
	faultChunkExt      Fault = "invalid chunk extension"
	faultChunkLine     Fault = "chunk line too long"
	faultChunkCRLF     Fault = "chunk data not followed by CRLF"
	faultTrailerSize   Fault = "trailer section too large"
)

// CopyBody copies one message body framed by fr from src to dst: a
// Content-Length body as it is, a chunked body re-emitted canonically (hex
// size CRLF data CRLF ... "0" CRLF trailer lines CRLF; chunk extensions are
// dropped, trailer fields forwarded as received except those naming framing,
// hop-by-hop or X-Forwarded-* fields), and a response with length -1 until
// src ends. A request with length -1 has no body. buf is a borrowed copy
// buffer (32 KiB, say) used when src's buffer is empty.
//
// dst is flushed whenever CopyBody is about to wait for src, so a slow
// stream or a long poll reaches the other side promptly; it is not flushed
// at the end. It returns the payload bytes copied (chunk framing excluded).
// A body cut short fails with a wrapped io.ErrUnexpectedEOF; bad chunked
// framing with ErrBadRequest or ErrBadResponse, after isRequest; other read
// and write errors come back as they are.
func CopyBody(dst *bufio.Writer, src *bufio.Reader, fr Framing, buf []byte, isRequest bool) (int64, error) {
	var n int64
	var err error
	switch {
	case fr.NoBody:
		return 0, nil
	case fr.Chunked:
		n, err = copyChunked(dst, src, buf, fr.Limit)
	case fr.Length > 0:
		n, err = copyExactly(dst, src, fr.Length, buf)
	case fr.Length < 0 && !isRequest:
		n, err = copyUntilEOF(dst, src, buf)
	default:
		return 0, nil
	}
	switch err {
	case nil:
		return n, nil
	case ErrBodyTooLarge:
		return n, fmt.Errorf("%w: more than %d bytes", err, fr.Limit)
	case io.ErrUnexpectedEOF:
		return n, fmt.Errorf("body cut short after %d bytes: %w", n, err)
	}
	if isRequest {
		return n, wrapFault(err, ErrBadRequest)
	}
	return n, wrapFault(err, ErrBadResponse)
}

// copyExactly copies n bytes: straight from src's buffer while it holds
// some, else through buf, reading directly into it. An end before n bytes
// is io.ErrUnexpectedEOF.
func copyExactly(dst *bufio.Writer, src *bufio.Reader, n int64, buf []byte) (int64, error) {
	return copyUpTo(dst, src, n, buf, false)
}

// copyUntilEOF copies until src ends; its EOF is the end of the body.
func copyUntilEOF(dst *bufio.Writer, src *bufio.Reader, buf []byte) (int64, error) {
	return copyUpTo(dst, src, math.MaxInt64, buf, true)
}

// copyUpTo copies at most n bytes from src to dst; with eofEnds, src's EOF
// ends the copy without error.
func copyUpTo(dst *bufio.Writer, src *bufio.Reader, n int64, buf []byte, eofEnds bool) (int64, error) {
	var done int64
	for done < n {
		rem := n - done
		if k := src.Buffered(); k > 0 {
			k = int(min(int64(k), rem))
			b, _ := src.Peek(k)
			if _, err := dst.Write(b); err != nil {
				return done, err
			}
			src.Discard(k)
			done += int64(k)
			continue
		}
		if err := flushPending(dst); err != nil {
			return done, err
		}
		var err error
		if len(buf) == 0 {
			_, err = src.Peek(1)
		} else {
			var k int
			k, err = src.Read(buf[:min(int64(len(buf)), rem)])
			if k > 0 {
				if _, err := dst.Write(buf[:k]); err != nil {
					return done, err
				}
				done += int64(k)
			}
		}
		switch {
		case err == nil:
		case err == io.EOF && eofEnds:
			return done, nil
		case done < n:
			return done, unexpectedEOF(err)
		}
	}
	return done, nil
}

// copyChunked checks and re-emits a chunked body, trailer section included.
// With max above zero, a chunk that would take the body past max is not
// copied: ErrBodyTooLarge.
func copyChunked(dst *bufio.Writer, src *bufio.Reader, buf []byte, limit int64) (int64, error) {
	var total int64
	for {
		line, err := chunkLine(dst, src, min(maxChunkLine, src.Size()), faultChunkLine)
		if err != nil {
			return total, err
		}
		size, err := parseChunkSize(line)
		if err != nil {
			return total, err
		}
		src.Discard(len(line) + 2)
		if size == 0 {
			break
		}
		if limit > 0 && size > limit-total {
			return total, ErrBodyTooLarge
		}
		if err := writeChunkSize(dst, size); err != nil {
			return total, err
		}
		n, err := copyExactly(dst, src, size, buf)
		total += n
		if err != nil {
			return total, err
		}
		if err := fillAtLeast(dst, src, 2); err != nil {
			return total, err
		}
		if b, _ := src.Peek(2); b[0] != '\r' || b[1] != '\n' {
			return total, faultChunkCRLF
		}
		src.Discard(2)
		if _, err := dst.WriteString("\r\n"); err != nil {
			return total, err
		}
	}
	if _, err := dst.WriteString("0\r\n"); err != nil {
		return total, err
	}
	for used := 0; ; {
		line, err := chunkLine(dst, src, min(maxTrailerBytes-used, src.Size()), faultTrailerSize)
		if err != nil {
			return total, err
		}
		if len(line) == 0 {
			src.Discard(2)
			_, err := dst.WriteString("\r\n")
			return total, err
		}
		used += len(line) + 2
		name, _, _, err := splitField(line)
		if err != nil {
			return total, err
		}
		if !dropTrailerField(name) {
			dst.Write(line)
			if _, err := dst.WriteString("\r\n"); err != nil {
				return total, err
			}
		}
		src.Discard(len(line) + 2)
	}
}

// chunkLine returns the next CRLF-terminated line of src, without its CRLF,
// once it is whole in src's buffer (valid until src is read again). A line
// reaching limit bytes without its LF fails with tooLong.
func chunkLine(dst *bufio.Writer, src *bufio.Reader, limit int, tooLong Fault) ([]byte, error) {
	searched := 0
	for {
		b, _ := src.Peek(src.Buffered())
		if len(b) > limit {
			b = b[:limit]
		}
		if i := bytes.IndexByte(b[searched:], '\n'); i >= 0 {
			i += searched
			if i == 0 || b[i-1] != '\r' {
				return nil, faultBareLF
			}
			return b[:i-1], nil
		}
		if len(b) >= limit {
			return nil, tooLong
		}
		searched = len(b)
		if err := fillAtLeast(dst, src, len(b)+1); err != nil {
			return nil, err
		}
	}
}

// parseChunkSize reads chunk-size [chunk-ext]: 1 to 16 hex digits within
// int64, then nothing or ";" starting extensions, which must hold no
// control byte but HTAB. Whitespace before the ";" (BWS in RFC 9112) is
// refused, as net/http refuses it.
func parseChunkSize(line []byte) (int64, error) {
	var n uint64
	i := 0
	for ; i < len(line) && headChars[line[i]]&hcHex != 0; i++ {
		if i == 16 {
			return 0, faultChunkOverflow
		}
		n = n<<4 | uint64(unhex(line[i]))
	}
	if i == 0 {
		return 0, faultChunkSize
	}
	if n > math.MaxInt64 {
		return 0, faultChunkOverflow
	}
	ext := line[i:]
	if len(ext) == 0 {
		return int64(n), nil
	}
	if ext[0] != ';' {
		return 0, faultChunkSize
	}
	for _, c := range ext {
		if headChars[c]&hcValue == 0 {
			if c == '\r' {
				return 0, faultBareCR
			}
			return 0, faultChunkExt
		}
	}
	return int64(n), nil
}

// writeChunkSize writes n in lower-case hex and CRLF.
func writeChunkSize(dst *bufio.Writer, n int64) error {
	shift := 60
	for shift > 0 && (n>>shift)&0xf == 0 {
		shift -= 4
	}
	for ; shift >= 0; shift -= 4 {
		dst.WriteByte("0123456789abcdef"[(n>>shift)&0xf])
	}
	_, err := dst.WriteString("\r\n")
	return err
}

// dropTrailerField reports a trailer field tether does not forward: those
// that frame the message or belong to one hop (RFC 9110 section 6.5.1
// forbids them in trailers), and those tether itself sets on the head.
func dropTrailerField(name []byte) bool {
	switch len(name) {
	case 2:
		return headEqualFold(name, "te")
	case 4:
		return headEqualFold(name, "host")
	case 7:
		return headEqualFold(name, "trailer") || headEqualFold(name, "upgrade")
	case 9:
		return headEqualFold(name, "x-real-ip")
	case 10:
		return headEqualFold(name, "connection") || headEqualFold(name, "keep-alive")
	case 14:
		return headEqualFold(name, "content-length")
	case 15:
		return headEqualFold(name, "x-forwarded-for")
	case 16:
		return headEqualFold(name, "proxy-connection") || headEqualFold(name, "x-forwarded-host")
	case 17:
		return headEqualFold(name, "transfer-encoding") || headEqualFold(name, "x-forwarded-proto")
	}
	return false
}

// fillAtLeast makes src buffer n bytes, flushing dst first if it has to
// wait for them.
func fillAtLeast(dst *bufio.Writer, src *bufio.Reader, n int) error {
	if src.Buffered() >= n {
		return nil
	}
	if err := flushPending(dst); err != nil {
		return err
	}
	if _, err := src.Peek(n); err != nil {
		return unexpectedEOF(err)
	}
	return nil
}

// flushPending flushes dst if it holds anything.
func flushPending(dst *bufio.Writer) error {
	if dst.Buffered() == 0 {
		return nil
	}
	return dst.Flush()
}

// unexpectedEOF turns the EOF met inside a body into io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
