package admin

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
)

// The admin listener's guard, in front of every admin endpoint:
//
//   - Host: only an IP literal, localhost, or a name given to --admin-hosts
//     (421 otherwise). A web page cannot then read /status or /metrics, or
//     post to /nodes/…, through a name of its own that it re-points at the
//     listener (DNS rebinding).
//   - Token: with --admin-token-file, every path but /healthz and /livez needs
//     "Authorization: Bearer TOKEN" (401 otherwise), compared in constant
//     time. Load-balancer health checkers often cannot send one.
//   - Cross-site requests: a state-changing request (POST) a browser sends
//     from another site (Sec-Fetch-Site, or an Origin that is not the
//     listener's) gets 403, and one with a form's content type (the bodies
//     a page may send anywhere without asking) gets 415. The node actions
//     take no body: operators send "curl -XPOST URL".

// MaxTokenFile bounds the token file tether reads.
const MaxTokenFile = 4 << 10

// Token is the SHA-256 of the admin token: what requests are checked
// against.
type Token [sha256.Size]byte

// Access is what the guard checks: the names the listener answers to
// besides IP literals and localhost (--admin-hosts), and the token (nil:
// none).
type Access struct {
	Hosts []string
	Token *Token
}

// LoadToken reads the bearer token from path ("" means none) and returns
// its SHA-256 (nil for none). Surrounding white space (a final
// newline) is dropped; an empty file, a token with spaces or control
// characters, or a file past 4 KiB is an error naming the file.
func LoadToken(path string) (*Token, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--admin-token-file %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxTokenFile+1))
	if err != nil {
		return nil, fmt.Errorf("--admin-token-file %s: %w", path, err)
	}
	if len(data) > MaxTokenFile {
		return nil, fmt.Errorf("--admin-token-file %s: larger than %d bytes", path, MaxTokenFile)
	}
	tok := bytes.TrimSpace(data)
	if len(tok) == 0 {
		return nil, fmt.Errorf("--admin-token-file %s: empty (write the token in it)", path)
	}
	for _, c := range tok {
		if c <= ' ' || c >= 0x7f {
			return nil, fmt.Errorf("--admin-token-file %s: the token must be printable ASCII without spaces", path)
		}
	}
	sum := Token(sha256.Sum256(tok))
	return &sum, nil
}

// isLoopbackAddr reports whether the listen address addr only accepts
// connections from this host: localhost or a loopback IP.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// CheckSettings validates the admin listener's settings: listen (--admin)
// off loopback needs tokenFile (--admin-token-file); hosts (--admin-hosts)
// are host names.
func CheckSettings(listen, tokenFile string, hosts []string) error {
	if listen != "" && !isLoopbackAddr(listen) && tokenFile == "" {
		return fmt.Errorf("--admin %s: not a loopback address, and the admin endpoints drain nodes: give --admin-token-file (and --admin-hosts for the names operators use)", listen)
	}
	for _, h := range hosts {
		if err := checkHostName(h); err != nil {
			return fmt.Errorf("--admin-hosts %q: %w", h, err)
		}
	}
	return nil
}

// checkHostName accepts a DNS name: letters, digits, '-' and '.', at most
// 253 bytes, no port.
func checkHostName(h string) error {
	if h == "" || len(h) > 253 {
		return errors.New("want a host name of 1 to 253 bytes")
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("has %q: want a host name without port (IP literals always pass)", c)
		}
	}
	return nil
}

// hostOK reports whether host (a request's Host) names the admin listener:
// an IP literal, localhost, or one of names (--admin-hosts), with or
// without a port. An empty Host (HTTP/1.0) passes: browsers always send one.
func hostOK(host string, names []string) bool {
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	host = strings.TrimSuffix(host, ".")
	if _, err := netip.ParseAddr(host); err == nil || strings.EqualFold(host, "localhost") {
		return true
	}
	for _, name := range names {
		if strings.EqualFold(strings.TrimSuffix(name, "."), host) {
			return true
		}
	}
	return false
}

// tokenOK reports whether r carries the admin token want (or want is nil),
// and whether it carried a token at all.
func tokenOK(r *http.Request, want *Token) (ok, sent bool) {
	if want == nil {
		return true, false
	}
	scheme, tok, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return false, false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1, true
}

// formTypes are the content types a web page may POST to any site without
// asking it first (CORS "simple" requests).
var formTypes = []string{"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}

// isFormPost reports whether r carries one of formTypes.
func isFormPost(r *http.Request) bool {
	for _, ct := range r.Header.Values("Content-Type") {
		mt, _, _ := strings.Cut(ct, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		for _, f := range formTypes {
			if mt == f {
				return true
			}
		}
	}
	return false
}

// guard wraps the admin endpoints with the Host, token and cross-site
// checks (see the top of this file), against the Server's Access at each
// request.
func (e *endpoints) guard(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		access := e.srv.Access()
		if !hostOK(r.Host, access.Hosts) {
			e.refuse(w, r, http.StatusMisdirectedRequest, "this listener answers to its IP address, localhost, or a name given to --admin-hosts")
			return
		}
		if r.URL.Path != "/healthz" && r.URL.Path != "/livez" {
			if ok, sent := tokenOK(r, access.Token); !ok {
				challenge := `Bearer realm="tether admin"`
				if sent {
					challenge += `, error="invalid_token"`
				}
				w.Header().Set("WWW-Authenticate", challenge)
				e.refuse(w, r, http.StatusUnauthorized, "send Authorization: Bearer TOKEN (the token of --admin-token-file)")
				return
			}
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if err := cop.Check(r); err != nil {
				e.refuse(w, r, http.StatusForbidden, "cross-origin request refused")
				return
			}
			if isFormPost(r) {
				e.refuse(w, r, http.StatusUnsupportedMediaType, "node actions take no body: curl -XPOST URL")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// refuse answers an admin request the guard refused, with why, and logs it
// (sampled).
func (e *endpoints) refuse(w http.ResponseWriter, r *http.Request, status int, why string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, "%d %s: %s\n", status, http.StatusText(status), why)
	e.errLog.Info().Str("remote", r.RemoteAddr).Str("method", r.Method).Str("path", r.URL.Path).
		Int("status", status).Msg("admin request refused")
}
