package wire

// Header field lines: name and value syntax, and the fields that frame a
// message (Content-Length, Transfer-Encoding, Trailer).

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"strings"
)

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
	if s.request {
		s.requestField(name, v)
	} else if s.ans != nil {
		s.answerField(start, line, name, v)
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
	case len("trailer"): // and "upgrade"
		switch {
		case headEqualFold(name, "trailer"):
			s.trailerBad = s.trailerBad || listHasFramingField(v)
		case s.request && headEqualFold(name, "upgrade"):
			for rest := v; len(rest) > 0; {
				var e []byte
				e, rest = NextElement(rest)
				s.upgradeWS = s.upgradeWS || headEqualFold(e, "websocket")
			}
		}
	case len("connection"):
		if headEqualFold(name, "connection") {
			for rest := v; len(rest) > 0; {
				var e []byte
				e, rest = NextElement(rest)
				s.connClose = s.connClose || headEqualFold(e, "close")
				s.keepAlive = s.keepAlive || headEqualFold(e, "keep-alive")
				s.connUpgrade = s.connUpgrade || headEqualFold(e, "upgrade")
			}
		}
	case len("content-length"):
		if headEqualFold(name, "content-length") {
			return s.contentLength(v, start+off, start, start+len(line)+2)
		}
		if headEqualFoldDash(name, "content-length") {
			return faultUnderscore
		}
	case len("transfer-encoding"): // and "sec-websocket-key"
		if headEqualFold(name, "transfer-encoding") {
			s.tes++
			s.teChunked = headEqualFold(v, "chunked")
			return nil
		}
		if headEqualFoldDash(name, "transfer-encoding") {
			return faultUnderscore
		}
		if s.request && headEqualFold(name, "sec-websocket-key") {
			s.wsKeys++
			s.wsKeyOK = validWebSocketKey(v)
		}
	case len("sec-websocket-version"):
		if s.request && headEqualFold(name, "sec-websocket-version") {
			s.wsVersions++
			s.wsVersionOK = string(v) == "13"
		}
	}
	return nil
}

// validWebSocketKey reports a Sec-WebSocket-Key that is the base64 of 16
// bytes (RFC 6455 section 4.1): 24 characters, the last two "=". Unused
// bits in the last character are let pass, as base64 decoders mostly do:
// the accept is computed from the key's text.
func validWebSocketKey(v []byte) bool {
	if len(v) != wsKeyLen {
		return false
	}
	var raw [18]byte
	n, err := base64.StdEncoding.Decode(raw[:], v)
	return err == nil && n == 16
}

// wsKeyLen is the length of a Sec-WebSocket-Key: base64 of 16 bytes.
const wsKeyLen = 24

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
	if s.request && s.connUpgrade && s.upgradeWS {
		return s.checkUpgrade()
	}
	return nil
}

// checkUpgrade checks a request that asks for a WebSocket (Connection lists
// upgrade, Upgrade lists websocket) as an opening handshake (RFC 6455
// section 4.1): a GET in HTTP/1.1 with one Sec-WebSocket-Key, the base64 of
// 16 bytes, and one Sec-WebSocket-Version, 13. A request that says
// websocket and is not all of that is refused (400) rather than forwarded
// without its upgrade: its client waits for a 101. A request naming another
// protocol in Upgrade is not one: it is forwarded as a plain request, its
// Upgrade dropped with the hop-by-hop fields.
func (s *headScan) checkUpgrade() error {
	switch {
	case !s.get || s.http10:
		return faultWSRequest
	case s.wsKeys != 1 || !s.wsKeyOK:
		return faultWSKey
	case s.wsVersions != 1 || !s.wsVersionOK:
		return faultWSVersion
	}
	s.upgrade = true
	return nil
}

// NextElement splits the first element off a comma-separated field value,
// without surrounding whitespace; e is empty for an empty element.
func NextElement(v []byte) (e, rest []byte) {
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
		e, rest = NextElement(rest)
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
	hcTarget                    // request-target bytes: visible ASCII but '#'
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
		if c > ' ' && c < 0x7f && c != '#' {
			t[i] |= hcTarget
		}
		if '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' {
			t[i] |= hcHex
		}
	}
	return t
}()

// IsToken reports whether s is a non-empty token (RFC 9110 section 5.6.2):
// what a field name, a cookie name or a parameter name must be.
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if headChars[s[i]]&hcToken == 0 {
			return false
		}
	}
	return true
}

// unhex is the value of a HEXDIG, or -1.
func unhex(c byte) int {
	switch {
	case headChars[c]&hcHex == 0:
		return -1
	case c <= '9':
		return int(c - '0')
	case c >= 'a':
		return int(c-'a') + 10
	}
	return int(c-'A') + 10
}

// Unescape percent-decodes v into scratch ('+' stays '+'). ok is false on a
// bad escape or when the result does not fit scratch.
func Unescape(v, scratch []byte) ([]byte, bool) {
	out := scratch[:0]
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '%' {
			if i+2 >= len(v) {
				return nil, false
			}
			hi, lo := unhex(v[i+1]), unhex(v[i+2])
			if hi < 0 || lo < 0 {
				return nil, false
			}
			c = byte(hi<<4 | lo)
			i += 2
		}
		if len(out) == cap(out) {
			return nil, false
		}
		out = append(out, c)
	}
	return out, true
}
