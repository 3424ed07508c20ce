package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/valyala/fasthttp"
)

// Reading a message head (RFC 9112 sections 2 to 6).
//
// tether must never find a message boundary where the node behind it would
// not. headScan reads a head strictly and byte by byte, in the reader's
// buffer: CRLF line ends only, no obs-fold, token field names, clean
// values, one Host, framing fields that leave no doubt. A request head is
// then parsed by fasthttp, from the very same bytes, into the connection's
// header value, and fasthttp must consume exactly the length the scan
// found. An answer head is not parsed again: the scan records what relaying
// it needs (AnswerHead), and it is relayed from the bytes checked. FRAMING.md
// lists what tether and fasthttp accept.

// Framing says how a message body is delimited.
type Framing struct {
	// Chunked: Transfer-Encoding is exactly "chunked"; Length is then -1.
	Chunked bool
	// Length is the Content-Length when !Chunked; -1 when absent (a
	// request then has no body, a response is read until the node closes);
	// 0 when NoBody.
	Length int64
	// NoBody is set on responses only: to a HEAD request, 1xx, 204 and 304
	// carry no body whatever their header says.
	NoBody bool
	// Limit, when above zero, bounds a chunked body: CopyBody fails with
	// ErrBodyTooLarge before it copies a chunk that would pass it. The
	// caller sets it (requests under --max-body-bytes); zero: no bound.
	Limit int64
	// CloseAfter: the connection must carry no further message after this
	// one. Set when the peer asked for it (Connection: close, or HTTP/1.0
	// without keep-alive), and on responses delimited by close or sent with
	// both Transfer-Encoding and Content-Length.
	CloseAfter bool
	// Upgrade is set on requests only: a WebSocket opening handshake (RFC
	// 6455 section 4.1) that checkUpgrade found complete. Only such a
	// request is forwarded as an upgrade.
	Upgrade bool
	// Fields is set on requests only: which hop-by-hop, forwarding and Host
	// fields the head carries (FieldSet).
	Fields FieldSet
}

var (
	ErrHeadTooLarge = errors.New("proxy: request head too large") // → 431
	// ErrTooManyFields wraps ErrHeadTooLarge: more header fields than
	// --max-header-fields (a larger reader would not help).
	ErrTooManyFields = fmt.Errorf("%w: more header fields than --max-header-fields", ErrHeadTooLarge)
	ErrBadRequest    = errors.New("proxy: bad request")            // → 400
	ErrBodyTooLarge  = errors.New("proxy: request body too large") // → 413
	ErrBadResponse   = errors.New("proxy: bad response from node") // → 502
)

// Fault names what was wrong with a head or a chunked body. Public
// errors wrap it under ErrBadRequest or ErrBadResponse.
type Fault string

func (f Fault) Error() string { return string(f) }

const (
	faultBareLF       Fault = "bare LF"
	faultBareCR       Fault = "bare CR"
	faultObsFold      Fault = "line starts with whitespace (obs-fold)"
	faultRequestLine  Fault = "malformed request line"
	faultMethod       Fault = "invalid method"
	faultConnect      Fault = "CONNECT is not supported"
	faultTarget       Fault = "invalid request target"
	faultFragment     Fault = "fragment (#) in request target"
	faultVersion      Fault = "unsupported HTTP version"
	faultStatusLine   Fault = "malformed status line"
	faultName         Fault = "invalid field name"
	faultNameSpace    Fault = "whitespace in field name"
	faultNoColon      Fault = "field line without colon"
	faultValue        Fault = "invalid byte in field value"
	faultUnderscore   Fault = "framing field name with underscore"
	faultHost         Fault = "invalid Host"
	faultHosts        Fault = "several Host fields"
	faultNoHost       Fault = "HTTP/1.1 request without Host"
	faultCL           Fault = "invalid Content-Length"
	faultCLs          Fault = "differing Content-Length values"
	faultCLMany       Fault = "too many Content-Length fields"
	faultTE           Fault = "Transfer-Encoding other than a single chunked"
	faultTE10         Fault = "Transfer-Encoding in HTTP/1.0"
	faultTECL         Fault = "both Transfer-Encoding and Content-Length"
	faultTrailerField Fault = "Trailer names a framing field"
	FaultTooLarge     Fault = "head too large"
	faultFields       Fault = "too many header fields"
	faultWSRequest    Fault = "WebSocket upgrade not a GET in HTTP/1.1"
	faultWSKey        Fault = "invalid Sec-WebSocket-Key"
	faultWSVersion    Fault = "Sec-WebSocket-Version other than 13"
	faultParser       Fault = "head parser disagrees"

	// errHeadIncomplete asks for more bytes; it never leaves this file.
	errHeadIncomplete Fault = "head incomplete"
)

// maxDupCL bounds repeated identical Content-Length lines.
const maxDupCL = 4

// NewRequestHeader returns a request header set up for ReadRequestHead: one
// per connection, reused for every request.
//
// It runs with DisableSpecialHeader, so every field line stays in the
// header's list in wire order and AppendBytes writes the head back as
// received: the request line, then each field as "Name: value" with the name
// in canonical case and surrounding whitespace trimmed. Host, Cookie,
// Content-Length, Transfer-Encoding, User-Agent and Connection are neither
// moved, merged nor re-serialized, and nothing (no default Content-Type, no
// "Connection: close") is added. Name normalization stays on, which is what
// makes DelBytes, Peek and PeekAll match names case-insensitively.
//
// In this mode fasthttp neither parses Content-Length nor Connection:
// framing carries both. Never call Cookie, CookieBytes, Cookies,
// VisitAllCookie, All, VisitAll, SetCookie or DelCookie on it: they move the
// Cookie lines out of the list, and AppendBytes then drops them. Read
// cookies with PeekAll("Cookie"). Reset switches the mode off;
// ReadRequestHead switches it back on.
func NewRequestHeader() *fasthttp.RequestHeader {
	h := &fasthttp.RequestHeader{}
	h.DisableSpecialHeader()
	h.SetNoDefaultContentType(true)
	return h
}

// ReadRequestHead reads one request head from br into h, checking it
// strictly first. maxHead is --max-header-bytes; br's buffer must hold at
// least that many bytes. Empty lines (CRLF) before the request line are
// skipped (RFC 9112 section 2.2) and count towards maxHead. maxFields is
// --max-header-fields (zero: no limit). An absolute-form target is
// rewritten to origin form, its authority becoming Host (originForm).
//
// It returns io.EOF, unwrapped, when the connection ended cleanly before a
// request (nothing, or only empty lines, was sent), io.ErrUnexpectedEOF when
// it ended inside a head, ErrHeadTooLarge, ErrTooManyFields (which wraps
// it), an error wrapping ErrBadRequest, or the read error as is (a timeout
// is a net.Error).
func ReadRequestHead(br *bufio.Reader, h *fasthttp.RequestHeader, maxHead, maxFields int) (Framing, error) {
	h.DisableSpecialHeader()
	s := headScan{request: true, maxFields: maxFields}
	if err := s.read(br, maxHead); err != nil {
		switch err {
		case FaultTooLarge:
			return Framing{}, ErrHeadTooLarge
		case faultFields:
			return Framing{}, ErrTooManyFields
		}
		return Framing{}, wrapFault(err, ErrBadRequest)
	}
	if err := parseCheckedHead(h, br, &s); err != nil {
		return Framing{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if s.absolute {
		originForm(h)
		s.fields |= FieldHost
	}
	fr := Framing{Length: -1, CloseAfter: s.connClose || s.http10 && !s.keepAlive, Upgrade: s.upgrade, Fields: s.fields}
	switch {
	case s.tes > 0:
		fr.Chunked = true
	case s.cls > 0:
		fr.Length = s.length
	}
	return fr, nil
}

// ReadResponseHead reads the node's answer head from br, checks it and
// records in a what relaying it needs; the head stays in br, unread, for
// a.Relay or a.Skip. head is true when the request was HEAD. Errors are as
// for ReadRequestHead, except that a bad or too large head wraps
// ErrBadResponse.
//
// A node is untrusted too: the same line rules apply. Differing from a
// request, Transfer-Encoding with Content-Length is read as chunked (RFC
// 9112 section 6.3) and closes the connection after, and a response with
// neither is read until the node closes.
func ReadResponseHead(br *bufio.Reader, a *AnswerHead, maxHead int, head bool) (Framing, error) {
	a.reset()
	s := headScan{isHead: head, ans: a}
	if err := s.read(br, maxHead); err != nil {
		return Framing{}, wrapFault(err, ErrBadResponse)
	}
	if a.fields == 0 {
		a.fields = s.end - 2
	}
	a.status, a.http10, a.end = s.status, s.http10, s.end
	fr := Framing{Length: -1, CloseAfter: s.connClose || s.http10 && !s.keepAlive}
	switch {
	case head || s.status < 200 || s.status == 204 || s.status == 304:
		fr.NoBody, fr.Length = true, 0
	case s.tes > 0:
		fr.Chunked = true
		fr.CloseAfter = fr.CloseAfter || s.cls > 0
	case s.cls > 0:
		fr.Length = s.length
	default:
		fr.CloseAfter = true
	}
	a.chunkedBody = fr.Chunked
	return fr, nil
}

// wrapFault puts a Fault under the sentinel the caller maps to a
// status; other errors (EOF, timeouts) pass as they are.
func wrapFault(err, sentinel error) error {
	if f, ok := err.(Fault); ok {
		return fmt.Errorf("%w: %w", sentinel, f)
	}
	return err
}

// headParser is fasthttp's RequestHeader.
type headParser interface {
	Read(r *bufio.Reader) error
}

// parseCheckedHead lets fasthttp parse the head s has checked, which br holds
// whole, and verifies that it consumed exactly that head. With the head in
// the buffer fasthttp does not read from the connection.
func parseCheckedHead(h headParser, br *bufio.Reader, s *headScan) error {
	if s.ndup > 0 {
		return parseCheckedHeadCopy(h, br, s)
	}
	before := br.Buffered()
	if err := h.Read(br); err != nil {
		return fmt.Errorf("%w: %v", faultParser, err)
	}
	if n := before - br.Buffered(); n != s.end {
		return fmt.Errorf("%w: it read %d bytes of a %d-byte head", faultParser, n, s.end)
	}
	return nil
}

// parseCheckedHeadCopy handles a head with repeated identical Content-Length
// lines, which fasthttp refuses: it parses a copy holding the first line
// only (so only that one is forwarded), then drops the head from br. Rare;
// it allocates.
func parseCheckedHeadCopy(h headParser, br *bufio.Reader, s *headScan) error {
	head, err := br.Peek(s.end)
	if err != nil {
		return err
	}
	one := make([]byte, 0, s.end)
	last := 0
	for _, d := range s.dup[:s.ndup] {
		one = append(one, head[last:d[0]]...)
		last = d[1]
	}
	one = append(one, head[last:]...)
	r := bufio.NewReaderSize(bytes.NewReader(one), len(one))
	if err := h.Read(r); err != nil {
		return fmt.Errorf("%w: %v", faultParser, err)
	}
	if r.Buffered() != 0 {
		return fmt.Errorf("%w: it left %d bytes of the head", faultParser, r.Buffered())
	}
	_, err = br.Discard(s.end)
	return err
}

// headScan checks one head as its bytes arrive. Offsets count from the
// first byte of the head (the reader's position), so they stay valid when
// the reader's buffer moves its bytes.
type headScan struct {
	request   bool
	isHead    bool        // response to a HEAD request
	ans       *AnswerHead // a response's record for the relay (answerField)
	maxFields int         // header fields allowed; zero: no limit

	pos      int // start of the first line not checked yet
	searched int // how far the line at pos was searched for its LF
	lines    int // lines checked, the start line included
	end      int // head length, set at the empty line

	http10    bool
	get       bool // the method is GET
	absolute  bool // absolute-form target
	status    int
	hosts     int
	hostEmpty bool
	keepAlive bool
	connClose bool

	cls        int   // Content-Length fields
	length     int64 // their value
	clOff      int   // offset and length of the first value
	clLen      int
	dup        [maxDupCL][2]int // repeated Content-Length lines: start, end
	ndup       int
	tes        int  // Transfer-Encoding fields
	teChunked  bool // the last one is "chunked"
	trailerBad bool // Trailer lists a Framing field

	connUpgrade bool // Connection lists "upgrade"
	upgradeWS   bool // Upgrade lists "websocket"
	wsKeys      int  // Sec-WebSocket-Key fields
	wsKeyOK     bool // the last one is base64 of 16 bytes
	wsVersions  int  // Sec-WebSocket-Version fields
	wsVersionOK bool // the last one is "13"
	upgrade     bool // a complete WebSocket handshake (finish)

	fields FieldSet // a request's fields of note (requestField)
}

// read skips empty lines, then scans a head from br until it is complete,
// reading more as needed. It returns nil with the whole head buffered.
func (s *headScan) read(br *bufio.Reader, maxHead int) error {
	skipped, err := skipEmptyLines(br, maxHead)
	if err != nil {
		return err
	}
	limit := min(maxHead-skipped, br.Size())
	for {
		b, _ := br.Peek(br.Buffered())
		if len(b) > limit {
			b = b[:limit]
		}
		err := s.scan(b)
		if err != errHeadIncomplete {
			return err
		}
		if len(b) >= limit {
			return FaultTooLarge
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			switch err {
			case io.EOF:
				return io.ErrUnexpectedEOF
			case bufio.ErrBufferFull:
				return FaultTooLarge
			}
			return err
		}
	}
}

// skipEmptyLines drops the CRLFs a client may send before a request line.
// It returns io.EOF when the connection ends before anything else.
func skipEmptyLines(br *bufio.Reader, maxHead int) (int, error) {
	n := 0
	for {
		if br.Buffered() > 0 {
			if b, _ := br.Peek(1); b[0] != '\r' && b[0] != '\n' {
				return n, nil
			}
		}
		b, err := br.Peek(2)
		switch {
		case len(b) == 0:
			return n, err // io.EOF or a read error, as they are
		case b[0] == '\n':
			return n, faultBareLF
		case b[0] != '\r':
			return n, nil
		case len(b) == 1:
			if err == io.EOF {
				return n, io.EOF
			}
			return n, err
		case b[1] != '\n':
			return n, faultBareCR
		}
		br.Discard(2)
		if n += 2; n >= maxHead {
			return n, FaultTooLarge
		}
	}
}

// scan checks the complete lines of b not checked yet. It returns
// errHeadIncomplete until it reaches the empty line ending the head.
func (s *headScan) scan(b []byte) error {
	for {
		from := max(s.pos, s.searched)
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			s.searched = len(b)
			return errHeadIncomplete
		}
		lf := from + i
		if lf == s.pos || b[lf-1] != '\r' {
			return faultBareLF
		}
		start := s.pos
		s.pos, s.searched = lf+1, lf+1
		line := b[start : lf-1]
		var err error
		switch {
		case s.lines == 0 && s.request:
			err = s.requestLine(line)
		case s.lines == 0:
			err = s.statusLine(line)
		case len(line) == 0:
			s.end = s.pos
			return s.finish()
		case s.maxFields > 0 && s.lines > s.maxFields:
			return faultFields
		default:
			err = s.field(b, start, line)
		}
		if err != nil {
			return err
		}
		s.lines++
	}
}
