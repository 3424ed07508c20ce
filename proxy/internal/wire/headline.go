package wire

// The start lines of heads: the request line (method, target, version) and
// the status line, checked strictly before fasthttp parses them.

import (
	"bytes"
	"net/netip"

	"github.com/valyala/fasthttp"
)

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
	s.get = string(method) == "GET"
	s.absolute = target[0] != '/' && target[0] != '*'
	return checkTarget(method, target)
}

// checkTarget accepts origin-form, absolute-form with an http or https
// scheme, and "*" for OPTIONS (RFC 9112 section 3.2), in visible ASCII. A
// '#' is refused: the grammar has no fragment, and a node or a routing rule
// could read the target before or after it.
func checkTarget(method, t []byte) error {
	for _, c := range t {
		if headChars[c]&hcTarget == 0 {
			if c == '#' {
				return faultFragment
			}
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

// originForm rewrites the absolute-form target checkTarget accepted
// (scheme://authority[path][?query]) as a gateway forwards it (RFC 9112
// section 3.2.2): Host becomes the authority, replacing any Host field, and
// the target its path and query ("/" when the path is empty). The node
// sees what it would from a client talking to it directly; the authority
// never chooses where tether connects.
func originForm(h *fasthttp.RequestHeader) {
	uri := h.RequestURI()
	rest := uri[bytes.Index(uri, strSchemeEnd)+len(strSchemeEnd):]
	end := len(rest)
	if i := bytes.IndexAny(rest, "/?"); i >= 0 {
		end = i
	}
	h.SetBytesKV(strHost, rest[:end]) // a copy, before the target is overwritten
	// RequestURI reads an empty path, or one starting with '?', with a '/'
	// in front.
	h.SetRequestURIBytes(rest[end:])
}

var (
	strSchemeEnd = []byte("://")
	strHost      = []byte("Host")
)

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
