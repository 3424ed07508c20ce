package route

import (
	"bytes"

	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/wire"
	"github.com/valyala/fasthttp"
)

// Reason says why a request went to its node; it is the access log's "why".
type Reason uint8

const (
	Balance  Reason = iota // no usable stickiness: fewest active sessions
	Cookie                 // the stickiness cookie named the node
	Param                  // the URL parameter named the node
	Failover               // stickiness named a node that is down, or a dial failed
)

func (r Reason) String() string {
	switch r {
	case Cookie:
		return "cookie"
	case Param:
		return "param"
	case Failover:
		return "failover"
	}
	return "balance"
}

// ParseReason is String's inverse; an unknown word is Balance.
func ParseReason(s string) Reason {
	for r := Balance; r <= Failover; r++ {
		if r.String() == s {
			return r
		}
	}
	return Balance
}

// Router chooses a node for a request head. It holds the configured names
// as bytes so that choosing allocates nothing.
type Router struct {
	cookie []byte // stickiness cookie name
	param  []byte // stickiness query parameter name
}

// New returns a router by the stickiness cookie and the URL parameter
// named.
func New(cookie, param string) Router {
	return Router{cookie: []byte(cookie), param: []byte(param)}
}

// Route picks the node for h from table t: the node named by the
// stickiness cookie, else by the URL parameter, else the balancer's choice.
// A value naming a node that is down fails over to a balanced pick; an
// unknown value balances. scratch holds a percent-decoded parameter value.
// Nil when no node can take the request.
func (r *Router) Route(t *pool.Table, h *fasthttp.RequestHeader, scratch []byte) (*pool.Node, Reason) {
	n, why := r.sticky(t, h, scratch)
	if n != nil {
		if t.Routable(n) {
			return n, why
		}
		n.Stats.Failovers.Add(1)
		return t.Pick(nil), Failover
	}
	return t.Pick(nil), Balance
}

// sticky returns the configured node named by the cookie or, failing that,
// the query parameter, and which of them named it; nil when neither names a
// configured node.
func (r *Router) sticky(t *pool.Table, h *fasthttp.RequestHeader, scratch []byte) (*pool.Node, Reason) {
	for _, header := range h.PeekAll("Cookie") {
		for {
			v, rest, ok := nextCookie(header, r.cookie)
			if !ok {
				break
			}
			if n := t.Lookup(v); n != nil {
				return n, Cookie
			}
			header = rest
		}
	}
	if v, ok := queryParam(h.RequestURI(), r.param, scratch); ok {
		if n := t.Lookup(v); n != nil {
			return n, Param
		}
	}
	return nil, Balance
}

// nextCookie finds the next cookie called name in one Cookie header value
// ("a=1; b=2") and returns its value, unquoted, and the rest of the header
// after it. ok is false when no further cookie has that name.
func nextCookie(header, name []byte) (v, rest []byte, ok bool) {
	for len(header) > 0 {
		var pair []byte
		if i := bytes.IndexByte(header, ';'); i >= 0 {
			pair, header = header[:i], header[i+1:]
		} else {
			pair, header = header, nil
		}
		pair = wire.TrimOWS(pair)
		eq := bytes.IndexByte(pair, '=')
		if eq < 0 || !bytes.Equal(pair[:eq], name) {
			continue
		}
		v = wire.TrimOWS(pair[eq+1:])
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, header, true
	}
	return nil, nil, false
}

// queryParam returns the value of the first parameter called name in the
// query of a request target, percent-decoded into scratch when it holds
// escapes ('+' stays '+': node names never hold spaces). A '#' ends the
// query (a fragment: clients do not send one; nginx reads it so too). ok is false when
// the parameter is absent, or its decoded value does not fit scratch.
func queryParam(uri, name, scratch []byte) (v []byte, ok bool) {
	if f := bytes.IndexByte(uri, '#'); f >= 0 {
		uri = uri[:f]
	}
	q := bytes.IndexByte(uri, '?')
	if q < 0 {
		return nil, false
	}
	query := uri[q+1:]
	for len(query) > 0 {
		var pair []byte
		if i := bytes.IndexByte(query, '&'); i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			pair, query = query, nil
		}
		eq := bytes.IndexByte(pair, '=')
		if eq < 0 || !bytes.Equal(pair[:eq], name) {
			continue
		}
		v = pair[eq+1:]
		if bytes.IndexByte(v, '%') < 0 {
			return v, true
		}
		return wire.Unescape(v, scratch)
	}
	return nil, false
}
