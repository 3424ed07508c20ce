package wire

// The request fields a proxy removes or replaces: which of them a head
// carries, noted while the head is checked, so the rewrite for the node
// looks only for those.

// FieldSet is a set of request fields, one bit each.
type FieldSet uint16

// The fields of a FieldSet: the hop-by-hop fields (RFC 9110 section 7.6.1)
// with Upgrade and Expect, the forwarding fields tether sets, and Host.
const (
	FieldConnection FieldSet = 1 << iota
	FieldKeepAlive
	FieldProxyConnection
	FieldProxyAuthorization
	FieldProxyAuthenticate
	FieldTE
	FieldTrailer
	FieldUpgrade
	FieldExpect
	FieldXForwardedFor
	FieldXForwardedProto
	FieldXForwardedHost
	FieldXRealIP
	// FieldHost: a Host field with a value (or an absolute-form target,
	// whose authority becomes Host).
	FieldHost
	// FieldConnectionOptions: Connection lists an element other than close,
	// keep-alive and upgrade (a field of the same name goes too).
	FieldConnectionOptions
)

// FieldOf returns the bit of the field named name, compared without
// regard to case, or 0 when name is none of FieldSet's. FieldHost and
// FieldConnectionOptions depend on values: FieldOf("Host") is FieldHost.
func FieldOf(name []byte) FieldSet {
	if len(name) == 0 || len(name) >= 32 || fieldLens[name[0]]>>len(name)&1 == 0 {
		return 0 // most names: Accept, Cookie, User-Agent, Referer, ...
	}
	switch len(name) {
	case len("te"):
		if headEqualFold(name, "te") {
			return FieldTE
		}
	case len("host"):
		if headEqualFold(name, "host") {
			return FieldHost
		}
	case len("expect"):
		if headEqualFold(name, "expect") {
			return FieldExpect
		}
	case len("trailer"): // and "upgrade"
		switch {
		case headEqualFold(name, "trailer"):
			return FieldTrailer
		case headEqualFold(name, "upgrade"):
			return FieldUpgrade
		}
	case len("x-real-ip"):
		if headEqualFold(name, "x-real-ip") {
			return FieldXRealIP
		}
	case len("connection"): // and "keep-alive"
		switch {
		case headEqualFold(name, "connection"):
			return FieldConnection
		case headEqualFold(name, "keep-alive"):
			return FieldKeepAlive
		}
	case len("x-forwarded-for"):
		if headEqualFold(name, "x-forwarded-for") {
			return FieldXForwardedFor
		}
	case len("proxy-connection"): // and "x-forwarded-host"
		switch {
		case headEqualFold(name, "proxy-connection"):
			return FieldProxyConnection
		case headEqualFold(name, "x-forwarded-host"):
			return FieldXForwardedHost
		}
	case len("x-forwarded-proto"):
		if headEqualFold(name, "x-forwarded-proto") {
			return FieldXForwardedProto
		}
	case len("proxy-authenticate"):
		if headEqualFold(name, "proxy-authenticate") {
			return FieldProxyAuthenticate
		}
	case len("proxy-authorization"):
		if headEqualFold(name, "proxy-authorization") {
			return FieldProxyAuthorization
		}
	}
	return 0
}

// fieldLens holds, for each first byte of a FieldSet field's name (in
// either case), the lengths of the names that start with it, one bit per
// length: most other names fail FieldOf on it alone.
var fieldLens = func() (t [256]uint32) {
	for _, name := range []string{"te", "host", "expect", "trailer", "upgrade", "x-real-ip", "connection", "keep-alive",
		"x-forwarded-for", "proxy-connection", "x-forwarded-host", "x-forwarded-proto", "proxy-authenticate", "proxy-authorization"} {
		t[name[0]] |= 1 << len(name)
		t[name[0]-'a'+'A'] |= 1 << len(name)
	}
	return t
}()

// requestField notes, for a request, which of FieldSet's fields the field
// line name: v is; headScan.field calls it for every field line.
func (s *headScan) requestField(name, v []byte) {
	f := FieldOf(name)
	switch f {
	case 0:
		return
	case FieldHost:
		if len(v) == 0 {
			return
		}
	case FieldConnection:
		for rest := v; len(rest) > 0; {
			var e []byte
			e, rest = NextElement(rest)
			if len(e) > 0 && !headEqualFold(e, "close") && !headEqualFold(e, "keep-alive") && !headEqualFold(e, "upgrade") {
				f |= FieldConnectionOptions
			}
		}
	}
	s.fields |= f
}
