package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/valyala/fasthttp"
)

// Reading a message head (RFC 9112 sections 2 to 6).
//
// tether must never find a message boundary where the node behind it would
// not, so a head is checked twice. headScan reads it first, strictly and
// byte by byte, in the reader's buffer: CRLF line ends only, no obs-fold,
// token field names, clean values, one Host, framing fields that leave no
// doubt. Only then does fasthttp parse the very same bytes into the
// connection's header value, and it must consume exactly the length the scan
// found. FRAMING.md lists what each of the two accepts.

// framing says how a message body is delimited.
type framing struct {
	// chunked: Transfer-Encoding is exactly "chunked"; length is then -1.
	chunked bool
	// length is the Content-Length when !chunked; -1 when absent (a
	// request then has no body, a response is read until the node closes);
	// 0 when noBody.
	length int64
	// noBody is set on responses only: to a HEAD request, 1xx, 204 and 304
	// carry no body whatever their header says.
	noBody bool
	// closeAfter: the connection must carry no further message after this
	// one. Set when the peer asked for it (Connection: close, or HTTP/1.0
	// without keep-alive), and on responses delimited by close or sent with
	// both Transfer-Encoding and Content-Length.
	closeAfter bool
}

var (
	errHeadTooLarge = errors.New("proxy: request head too large") // → 431
	errBadRequest   = errors.New("proxy: bad request")            // → 400
	errBadResponse  = errors.New("proxy: bad response from node") // → 502
)

// headFault names what was wrong with a head or a chunked body. Public
// errors wrap it under errBadRequest or errBadResponse.
type headFault string

func (f headFault) Error() string { return string(f) }

const (
	faultBareLF       headFault = "bare LF"
	faultBareCR       headFault = "bare CR"
	faultObsFold      headFault = "line starts with whitespace (obs-fold)"
	faultRequestLine  headFault = "malformed request line"
	faultMethod       headFault = "invalid method"
	faultConnect      headFault = "CONNECT is not supported"
	faultTarget       headFault = "invalid request target"
	faultVersion      headFault = "unsupported HTTP version"
	faultStatusLine   headFault = "malformed status line"
	faultName         headFault = "invalid field name"
	faultNameSpace    headFault = "whitespace in field name"
	faultNoColon      headFault = "field line without colon"
	faultValue        headFault = "invalid byte in field value"
	faultUnderscore   headFault = "framing field name with underscore"
	faultHost         headFault = "invalid Host"
	faultHosts        headFault = "several Host fields"
	faultNoHost       headFault = "HTTP/1.1 request without Host"
	faultCL           headFault = "invalid Content-Length"
	faultCLs          headFault = "differing Content-Length values"
	faultCLMany       headFault = "too many Content-Length fields"
	faultTE           headFault = "Transfer-Encoding other than a single chunked"
	faultTE10         headFault = "Transfer-Encoding in HTTP/1.0"
	faultTECL         headFault = "both Transfer-Encoding and Content-Length"
	faultTrailerField headFault = "Trailer names a framing field"
	faultTooLarge     headFault = "head too large"
	faultParser       headFault = "head parser disagrees"

	// errHeadIncomplete asks for more bytes; it never leaves this file.
	errHeadIncomplete headFault = "head incomplete"
)

// maxDupCL bounds repeated identical Content-Length lines.
const maxDupCL = 4

// newRequestHeader returns a request header set up for readRequestHead: one
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
// readRequestHead switches it back on.
func newRequestHeader() *fasthttp.RequestHeader {
	h := &fasthttp.RequestHeader{}
	h.DisableSpecialHeader()
	h.SetNoDefaultContentType(true)
	return h
}

// newResponseHeader returns a response header set up for readResponseHead.
// fasthttp's ResponseHeader has no raw mode: it keeps Content-Type,
// Content-Length, Server, Set-Cookie and Connection: close apart from the
// other fields, and its AppendBytes replaces Date with its own. No default
// Content-Type is added.
func newResponseHeader() *fasthttp.ResponseHeader {
	h := &fasthttp.ResponseHeader{}
	h.SetNoDefaultContentType(true)
	return h
}

// readRequestHead reads one request head from br into h, checking it
// strictly first. maxHead is --max-header-bytes; br's buffer must hold at
// least that many bytes. Empty lines (CRLF) before the request line are
// skipped (RFC 9112 section 2.2) and count towards maxHead.
//
// It returns io.EOF, unwrapped, when the connection ended cleanly before a
// request (nothing, or only empty lines, was sent), io.ErrUnexpectedEOF when
// it ended inside a head, errHeadTooLarge, an error wrapping errBadRequest,
// or the read error as is (a timeout is a net.Error).
func readRequestHead(br *bufio.Reader, h *fasthttp.RequestHeader, maxHead int) (framing, error) {
	h.DisableSpecialHeader()
	s := headScan{request: true}
	if err := s.read(br, maxHead); err != nil {
		if err == faultTooLarge {
			return framing{}, errHeadTooLarge
		}
		return framing{}, wrapFault(err, errBadRequest)
	}
	if err := parseCheckedHead(h, br, &s); err != nil {
		return framing{}, fmt.Errorf("%w: %w", errBadRequest, err)
	}
	fr := framing{length: -1, closeAfter: s.connClose || s.http10 && !s.keepAlive}
	switch {
	case s.tes > 0:
		fr.chunked = true
	case s.cls > 0:
		fr.length = s.length
	}
	return fr, nil
}

// readResponseHead reads the node's answer head from br into h. head is
// true when the request was HEAD. Errors are as for readRequestHead, except
// that a bad or too large head wraps errBadResponse.
//
// A node is untrusted too: the same line rules apply. Differing from a
// request, Transfer-Encoding with Content-Length is read as chunked (RFC
// 9112 section 6.3) and closes the connection after, and a response with
// neither is read until the node closes.
func readResponseHead(br *bufio.Reader, h *fasthttp.ResponseHeader, maxHead int, head bool) (framing, error) {
	h.SetNoDefaultContentType(true)
	s := headScan{isHead: head}
	if err := s.read(br, maxHead); err != nil {
		return framing{}, wrapFault(err, errBadResponse)
	}
	if err := parseCheckedHead(h, br, &s); err != nil {
		return framing{}, fmt.Errorf("%w: %w", errBadResponse, err)
	}
	fr := framing{length: -1, closeAfter: s.connClose || s.http10 && !s.keepAlive}
	switch {
	case head || s.status < 200 || s.status == 204 || s.status == 304:
		fr.noBody, fr.length = true, 0
	case s.tes > 0:
		fr.chunked = true
		fr.closeAfter = fr.closeAfter || s.cls > 0
	case s.cls > 0:
		fr.length = s.length
	default:
		fr.closeAfter = true
	}
	return fr, nil
}

// wrapFault puts a headFault under the sentinel the caller maps to a
// status; other errors (EOF, timeouts) pass as they are.
func wrapFault(err, sentinel error) error {
	if f, ok := err.(headFault); ok {
		return fmt.Errorf("%w: %w", sentinel, f)
	}
	return err
}

// headParser is fasthttp's RequestHeader or ResponseHeader.
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
	request bool
	isHead  bool // response to a HEAD request

	pos      int // start of the first line not checked yet
	searched int // how far the line at pos was searched for its LF
	lines    int // lines checked, the start line included
	end      int // head length, set at the empty line

	http10    bool
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
	trailerBad bool // Trailer lists a framing field
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
			return faultTooLarge
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			switch err {
			case io.EOF:
				return io.ErrUnexpectedEOF
			case bufio.ErrBufferFull:
				return faultTooLarge
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
			return n, faultTooLarge
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
		default:
			err = s.field(b, start, line)
		}
		if err != nil {
			return err
		}
		s.lines++
	}
}

// requestLine checks method SP request-target SP HTTP-version.
func (s *headScan) requestLine(line []byte) error {
	if bytes.IndexByte(line, '\r') >= 0 {
		return faultBareCR
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return faultRequestLine
	}
	method, rest := line[:sp], line[sp+1:]
	for _, c := range method {
		if headChars[c]&hcToken == 0 {
			return faultMethod
		}
	}
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return faultRequestLine
	}
	target, version := rest[:sp], rest[sp+1:]
	switch string(version) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		s.http10 = true
	default:
		return faultVersion
	}
	if string(method) == "CONNECT" {
		// No tunnels: a 2xx would turn the node connection into one while
		// tether still read it as HTTP.
		return faultConnect
	}
	return checkTarget(method, target)
}

// checkTarget accepts origin-form, absolute-form with an http or https
// scheme, and "*" for OPTIONS (RFC 9112 section 3.2), in visible ASCII.
func checkTarget(method, t []byte) error {
	for _, c := range t {
		if headChars[c]&hcTarget == 0 {
			return faultTarget
		}
	}
	switch {
	case t[0] == '/':
		return checkPath(t)
	case len(t) == 1 && t[0] == '*':
		if string(method) == "OPTIONS" {
			return nil
		}
		return faultTarget
	}
	var rest []byte
	switch {
	case len(t) > 7 && headEqualFold(t[:7], "http://"):
		rest = t[7:]
	case len(t) > 8 && headEqualFold(t[:8], "https://"):
		rest = t[8:]
	default:
		return faultTarget
	}
	end := len(rest)
	if i := bytes.IndexAny(rest, "/?"); i >= 0 {
		end = i
	}
	if !validAuthority(rest[:end]) {
		return faultTarget
	}
	return checkPath(rest[end:])
}

// checkPath checks that every % in the path (before any ?) starts a
// percent-encoded octet, as url.ParseRequestURI does.
func checkPath(p []byte) error {
	if q := bytes.IndexByte(p, '?'); q >= 0 {
		p = p[:q]
	}
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		if i+2 >= len(p) || headChars[p[i+1]]&hcHex == 0 || headChars[p[i+2]]&hcHex == 0 {
			return faultTarget
		}
		i += 2
	}
	return nil
}

// validAuthority accepts host [":" port] without userinfo: a reg-name or
// IPv4 address, or an IPv6 literal in brackets.
func validAuthority(a []byte) bool {
	var host, port []byte
	if len(a) > 0 && a[0] == '[' {
		rb := bytes.IndexByte(a, ']')
		if rb < 0 {
			return false
		}
		for _, c := range a[1:rb] {
			if c != ':' && c != '.' && headChars[c]&hcHex == 0 {
				return false
			}
		}
		ip, err := netip.ParseAddr(string(a[1:rb]))
		if err != nil || !ip.Is6() {
			return false
		}
		rest := a[rb+1:]
		if len(rest) > 0 {
			if rest[0] != ':' {
				return false
			}
			port = rest[1:]
		}
	} else {
		host = a
		if c := bytes.LastIndexByte(a, ':'); c >= 0 {
			host, port = a[:c], a[c+1:]
		}
		if len(host) == 0 {
			return false
		}
		for _, c := range host {
			if headChars[c]&hcRegName == 0 {
				return false
			}
		}
	}
	if len(port) > 5 {
		return false
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// statusLine checks HTTP-version SP 3DIGIT [SP reason-phrase]. The SP
// before an empty reason may be missing: many servers leave it out.
func (s *headScan) statusLine(line []byte) error {
	if bytes.IndexByte(line, '\r') >= 0 {
		return faultBareCR
	}
	if len(line) < len("HTTP/1.1 200") {
		return faultStatusLine
	}
	switch string(line[:9]) {
	case "HTTP/1.1 ":
	case "HTTP/1.0 ":
		s.http10 = true
	default:
		return faultVersion
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return faultStatusLine
		}
		s.status = s.status*10 + int(c-'0')
	}
	if s.status < 100 || s.status > 599 {
		return faultStatusLine
	}
	reason := line[12:]
	if len(reason) == 0 {
		return nil
	}
	if reason[0] != ' ' {
		return faultStatusLine
	}
	for _, c := range reason {
		if headChars[c]&hcValue == 0 {
			return faultStatusLine
		}
	}
	return nil
}

// splitField checks one field line (no CRLF) and splits it into its name
// and its value without surrounding whitespace; off is where the value
// starts in line. Header and trailer sections share it.
func splitField(line []byte) (name, value []byte, off int, err error) {
	if line[0] == ' ' || line[0] == '\t' {
		return nil, nil, 0, faultObsFold
	}
	colon := 0
	for ; colon < len(line) && headChars[line[colon]]&hcToken != 0; colon++ {
	}
	switch {
	case colon == len(line):
		return nil, nil, 0, faultNoColon
	case line[colon] == ' ' || line[colon] == '\t':
		return nil, nil, 0, faultNameSpace
	case line[colon] == '\r':
		return nil, nil, 0, faultBareCR
	case line[colon] != ':' || colon == 0:
		return nil, nil, 0, faultName
	}
	if bad := invalidValueByte(line[colon+1:]); bad >= 0 {
		if bad == '\r' {
			return nil, nil, 0, faultBareCR
		}
		return nil, nil, 0, faultValue
	}
	i, j := colon+1, len(line)
	for i < j && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	for j > i && (line[j-1] == ' ' || line[j-1] == '\t') {
		j--
	}
	return line[:colon], line[i:j], i, nil
}

// invalidValueByte returns the first byte of v that is not field-vchar,
// SP or HTAB, or -1. It tests eight bytes at a time: a word with no byte
// below 0x20 and none equal to 0x7f is clean (obs-text passes both tests),
// and only other words are looked at byte by byte.
func invalidValueByte(v []byte) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(v); i += 8 {
		w := binary.LittleEndian.Uint64(v[i:])
		del := w ^ (ones * 0x7f)
		if (w-ones*0x20)&^w&highs == 0 && (del-ones)&^del&highs == 0 {
			continue
		}
		for _, c := range v[i : i+8] {
			if headChars[c]&hcValue == 0 {
				return int(c)
			}
		}
	}
	for _, c := range v[i:] {
		if headChars[c]&hcValue == 0 {
			return int(c)
		}
	}
	return -1
}

// field checks one header field line that starts at offset start of b and
// notes what framing needs to know.
func (s *headScan) field(b []byte, start int, line []byte) error {
	name, v, off, err := splitField(line)
	if err != nil {
		return err
	}
	switch len(name) {
	case len("host"):
		if !s.request || !headEqualFold(name, "host") {
			return nil
		}
		if s.hosts++; s.hosts > 1 {
			return faultHosts
		}
		s.hostEmpty = len(v) == 0
		for _, c := range v {
			if headChars[c]&hcHost == 0 {
				return faultHost
			}
		}
	case len("trailer"):
		if headEqualFold(name, "trailer") {
			s.trailerBad = s.trailerBad || listHasFramingField(v)
		}
	case len("connection"):
		if headEqualFold(name, "connection") {
			for rest := v; len(rest) > 0; {
				var e []byte
				e, rest = nextElement(rest)
				s.connClose = s.connClose || headEqualFold(e, "close")
				s.keepAlive = s.keepAlive || headEqualFold(e, "keep-alive")
			}
		}
	case len("content-length"):
		if headEqualFold(name, "content-length") {
			return s.contentLength(v, start+off, start, start+len(line)+2)
		}
		if headEqualFoldDash(name, "content-length") {
			return faultUnderscore
		}
	case len("transfer-encoding"):
		if headEqualFold(name, "transfer-encoding") {
			s.tes++
			s.teChunked = headEqualFold(v, "chunked")
			return nil
		}
		if headEqualFoldDash(name, "transfer-encoding") {
			return faultUnderscore
		}
	}
	return nil
}

// contentLength notes one Content-Length value: 1 to 18 digits. A repeated
// line must carry the very same value (as net/http compares them); it is
// dropped before fasthttp parses the head. A list ("5, 5") is refused, as
// net/http and fasthttp refuse it.
func (s *headScan) contentLength(v []byte, vOff, lineStart, lineEnd int) error {
	if len(v) == 0 || len(v) > 18 {
		return faultCL
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return faultCL
		}
		n = n*10 + int64(c-'0')
	}
	if s.cls++; s.cls == 1 {
		s.length, s.clOff, s.clLen = n, vOff, len(v)
		return nil
	}
	if len(v) != s.clLen || n != s.length {
		return faultCLs
	}
	if s.ndup == maxDupCL {
		return faultCLMany
	}
	s.dup[s.ndup] = [2]int{lineStart, lineEnd}
	s.ndup++
	return nil
}

// finish applies the rules that need the whole head.
func (s *headScan) finish() error {
	if s.tes > 0 {
		switch {
		case s.http10:
			return faultTE10
		case s.tes > 1 || !s.teChunked:
			return faultTE
		case s.cls > 0 && s.request:
			return faultTECL
		case s.trailerBad:
			return faultTrailerField
		}
	}
	if s.request && !s.http10 && (s.hosts == 0 || s.hostEmpty) {
		return faultNoHost
	}
	return nil
}

// nextElement splits the first element off a comma-separated field value,
// without surrounding whitespace; e is empty for an empty element.
func nextElement(v []byte) (e, rest []byte) {
	e = v
	if i := bytes.IndexByte(v, ','); i >= 0 {
		e, rest = v[:i], v[i+1:]
	}
	return bytes.Trim(e, " \t"), rest
}

// listHasFramingField reports a Trailer value naming a field that frames
// the message; net/http refuses those too.
func listHasFramingField(v []byte) bool {
	for rest := v; len(rest) > 0; {
		var e []byte
		e, rest = nextElement(rest)
		if headEqualFold(e, "transfer-encoding") || headEqualFold(e, "content-length") || headEqualFold(e, "trailer") {
			return true
		}
	}
	return false
}

// headEqualFold reports whether b equals the lower-case ASCII string lower,
// ignoring case.
func headEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// headEqualFoldDash is headEqualFold reading '_' as '-': it catches names
// such as Content_Length that CGI-style servers take for the real field.
func headEqualFoldDash(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// Character classes of headChars.
const (
	hcToken   uint8 = 1 << iota // tchar (RFC 9110 section 5.6.2)
	hcValue                     // field-vchar, SP, HTAB (no CTL, no DEL)
	hcHost                      // Host value bytes, as net/http's ValidHostHeader
	hcRegName                   // unreserved and sub-delims, no %
	hcTarget                    // request-target bytes: visible ASCII
	hcHex                       // HEXDIG
)

var headChars = func() (t [256]uint8) {
	for i := range t {
		c := byte(i)
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if alnum || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			t[i] |= hcToken
		}
		if c == '\t' || c >= ' ' && c != 0x7f {
			t[i] |= hcValue
		}
		if alnum || strings.IndexByte("!$%&'()*+,-.:;=[]_~", c) >= 0 {
			t[i] |= hcHost
		}
		if alnum || strings.IndexByte("!$&'()*+,-.;=_~", c) >= 0 {
			t[i] |= hcRegName
		}
		if c > ' ' && c < 0x7f {
			t[i] |= hcTarget
		}
		if '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' {
			t[i] |= hcHex
		}
	}
	return t
}()
