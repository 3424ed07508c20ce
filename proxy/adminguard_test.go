package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/admin"
)

// adminServer builds a Server in front of CB_Server_1 (no health checks)
// with tweak applied to its Config, and returns it and its admin handler.
func adminServer(t *testing.T, tweak func(*Config)) (*Server, http.Handler) {
	t.Helper()
	cfg := oneNode("127.0.0.1:1")
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := New(cfg, zerolog.Nop(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, s.AdminHandler()
}

// adminDo sends method path to h with Host 127.0.0.1:9090 (unless headers
// set Host), the given headers and body.
func adminDo(h http.Handler, method, path, body string, headers map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Host = "127.0.0.1:9090"
	for k, v := range headers {
		if k == "Host" {
			r.Host = v
			continue
		}
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// writeToken writes a token file and returns its path.
func writeToken(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAdminRefusesCrossSite: what a browser may send from another site (a
// form POST, a cross-site Origin or Sec-Fetch-Site) does not drain a node;
// curl -XPOST with no body does, and so does the admin's own page.
func TestAdminRefusesCrossSite(t *testing.T) {
	s, h := adminServer(t, nil)
	const drain = "/nodes/CB_Server_1/drain"
	cases := []struct {
		name    string
		body    string
		headers map[string]string
		want    int
	}{
		{"form post from another site", "x=1", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "application/x-www-form-urlencoded"}, 403},
		{"cross-site Origin alone", "", map[string]string{"Origin": "https://evil.example"}, 403},
		{"cross-site Sec-Fetch-Site alone", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site Sec-Fetch-Site", "", map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"form content type", "x=1", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"multipart form", "", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, 415},
		{"text/plain", "x", map[string]string{"Content-Type": "Text/Plain; charset=utf-8"}, 415},
	}
	for _, tc := range cases {
		if w := adminDo(h, "POST", drain, tc.body, tc.headers); w.Code != tc.want {
			t.Errorf("%s: %d %q, want %d", tc.name, w.Code, w.Body.String(), tc.want)
		}
		if st := s.Pool().Node("CB_Server_1").State(); st != pool.StateUp {
			t.Fatalf("%s: the node is %s", tc.name, st)
		}
	}
	for name, headers := range map[string]map[string]string{
		"curl -XPOST":          nil,
		"same-origin page":     {"Origin": "http://127.0.0.1:9090", "Sec-Fetch-Site": "same-origin"},
		"JSON body, no Origin": {"Content-Type": "application/json"},
	} {
		if w := adminDo(h, "POST", drain, "", headers); w.Code != 200 {
			t.Errorf("%s: %d %q, want 200", name, w.Code, w.Body.String())
		}
		if st := s.Pool().Node("CB_Server_1").State(); st != pool.StateDraining {
			t.Fatalf("%s: the node is %s, want draining", name, st)
		}
		if w := adminDo(h, "POST", "/nodes/CB_Server_1/enable", "", headers); w.Code != 200 {
			t.Fatalf("%s: enable: %d", name, w.Code)
		}
	}
}

// TestAdminHostCheck: a Host that does not name the admin listener (DNS
// rebinding) gets 421 and no data, on every path; IP literals, localhost
// and --admin-hosts names pass.
func TestAdminHostCheck(t *testing.T) {
	_, h := adminServer(t, func(c *Config) { c.AdminHosts = []string{"admin.example"} })
	for _, path := range []string{"/status", "/metrics", "/healthz", "/status?format=html"} {
		w := adminDo(h, "GET", path, "", map[string]string{"Host": "rebind.evil.example"})
		if w.Code != http.StatusMisdirectedRequest || strings.Contains(w.Body.String(), "CB_Server_1") || strings.Contains(w.Body.String(), "tether_") {
			t.Errorf("GET %s with a foreign Host: %d %q, want 421 and no data", path, w.Code, w.Body.String())
		}
	}
	if w := adminDo(h, "POST", "/nodes/CB_Server_1/drain", "", map[string]string{"Host": "rebind.evil.example:9090"}); w.Code != 421 {
		t.Errorf("drain with a foreign Host: %d, want 421", w.Code)
	}
	for _, host := range []string{"127.0.0.1:9090", "127.0.0.1", "[::1]:9090", "localhost:9090", "LOCALHOST", "localhost.:9090",
		"198.51.100.3:9090", "admin.example:9090", "Admin.Example.", ""} {
		if w := adminDo(h, "GET", "/status", "", map[string]string{"Host": host}); w.Code != 200 {
			t.Errorf("GET /status with Host %q: %d, want 200", host, w.Code)
		}
	}
	for _, host := range []string{"admin.example.evil", "xadmin.example", "localhost.evil.example", "127.0.0.1.evil.example"} {
		if w := adminDo(h, "GET", "/status", "", map[string]string{"Host": host}); w.Code != 421 {
			t.Errorf("GET /status with Host %q: %d, want 421", host, w.Code)
		}
	}
}

// TestAdminToken: with a token file, every admin path but /healthz needs
// the bearer token (401 with WWW-Authenticate otherwise), pprof included.
func TestAdminToken(t *testing.T) {
	path := writeToken(t, "s3cret-token\n")
	_, h := adminServer(t, func(c *Config) { c.AdminTokenFile, c.Pprof = path, true })
	paths := []struct{ method, path string }{
		{"GET", "/status"}, {"GET", "/metrics"}, {"GET", "/debug/pprof/"}, {"POST", "/nodes/CB_Server_1/drain"},
		{"POST", "/nodes/CB_Server_1/enable"}, {"GET", "/nowhere"},
	}
	for _, p := range paths {
		for auth, challenge := range map[string]string{
			"":                          `Bearer realm="tether admin"`,
			"Bearer wrong":              `Bearer realm="tether admin", error="invalid_token"`,
			"Bearer s3cret-token-and":   `Bearer realm="tether admin", error="invalid_token"`,
			"Basic czNjcmV0LXRva2Vu":    `Bearer realm="tether admin"`,
			"s3cret-token":              `Bearer realm="tether admin"`,
			"Bearer  s3cret-token-x   ": `Bearer realm="tether admin", error="invalid_token"`,
		} {
			w := adminDo(h, p.method, p.path, "", map[string]string{"Authorization": auth})
			if w.Code != 401 || w.Header().Get("WWW-Authenticate") != challenge || strings.Contains(w.Body.String(), "CB_Server_1") {
				t.Errorf("%s %s with %q: %d %q %q, want 401 with %q", p.method, p.path, auth, w.Code, w.Header().Get("WWW-Authenticate"), w.Body.String(), challenge)
			}
		}
		want := 200
		if p.path == "/nowhere" {
			want = 404
		}
		for _, auth := range []string{"Bearer s3cret-token", "bearer s3cret-token", "Bearer  s3cret-token "} {
			if w := adminDo(h, p.method, p.path, "", map[string]string{"Authorization": auth}); w.Code != want {
				t.Errorf("%s %s with %q: %d, want %d", p.method, p.path, auth, w.Code, want)
			}
		}
	}
	if w := adminDo(h, "GET", "/healthz", "", nil); w.Code != 200 || w.Body.String() != "ok\n" {
		t.Errorf("/healthz without a token: %d %q, want 200 ok", w.Code, w.Body.String())
	}
	if w := adminDo(h, "GET", "/healthz", "", map[string]string{"Host": "rebind.evil.example"}); w.Code != 421 {
		t.Errorf("/healthz with a foreign Host: %d, want 421", w.Code)
	}
}

// TestAdminTokenFileErrors: an empty, unreadable or malformed token file
// stops tether at start with a line naming the file.
func TestAdminTokenFileErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"empty":       writeToken(t, ""),
		"blank":       writeToken(t, " \n\t\n"),
		"with spaces": writeToken(t, "two words\n"),
		"too large":   writeToken(t, strings.Repeat("x", admin.MaxTokenFile+1)),
		"missing":     filepath.Join(t.TempDir(), "none"),
	}
	for name, path := range cases {
		cfg := oneNode("127.0.0.1:1")
		cfg.AdminTokenFile = path
		s, err := New(cfg, zerolog.Nop(), zerolog.Nop())
		if err == nil {
			s.Shutdown(context.Background())
			t.Errorf("%s token file: New accepted it", name)
			continue
		}
		if !strings.Contains(err.Error(), "--admin-token-file "+path) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s token file: %q does not name the file in one line", name, err)
		}
	}
}

// TestAdminOffLoopbackNeedsToken: an admin address that is not loopback
// is refused without a token file; loopback ones need none.
func TestAdminOffLoopbackNeedsToken(t *testing.T) {
	t.Parallel()
	for addr, ok := range map[string]bool{
		"127.0.0.1:9090": true, "127.0.0.2:9090": true, "[::1]:9090": true, "localhost:9090": true, "LocalHost:0": true, "": true,
		"0.0.0.0:9090": false, ":9090": false, "[::]:9090": false, "198.51.100.1:9090": false, "admin.example:9090": false, "[::ffff:198.51.100.1]:9090": false,
	} {
		cfg := oneNode("127.0.0.1:1")
		cfg.Admin = addr
		cfg.SetDefaults()
		err := cfg.Validate()
		if (err == nil) != ok {
			t.Errorf("--admin %q without a token: %v, want ok %v", addr, err, ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "--admin "+addr) || !strings.Contains(err.Error(), "--admin-token-file")) {
			t.Errorf("--admin %q: %q names neither the address nor --admin-token-file", addr, err)
		}
		cfg.AdminTokenFile = "/some/file"
		if err := cfg.Validate(); err != nil {
			t.Errorf("--admin %q with a token file: %v", addr, err)
		}
	}
	cfg := oneNode("127.0.0.1:1")
	cfg.SetDefaults()
	for _, bad := range []string{"admin.example:9090", "", "a b", "[::1]"} {
		cfg.AdminHosts = []string{"ok.example", bad}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--admin-hosts") {
			t.Errorf("--admin-hosts %q: %v, want an error naming the flag", bad, err)
		}
	}
}

// TestAdminTokenReload: a reload re-reads the token file (a rotated token
// takes over at once); a file that no longer reads fails the reload and
// keeps the running token.
func TestAdminTokenReload(t *testing.T) {
	path := writeToken(t, "first\n")
	cfg := oneNode("127.0.0.1:1")
	cfg.AdminTokenFile = path
	s, h := adminServer(t, func(c *Config) { *c = cfg })
	code := func(tok string) int {
		return adminDo(h, "GET", "/status", "", map[string]string{"Authorization": "Bearer " + tok}).Code
	}
	if code("first") != 200 {
		t.Fatal("the first token does not pass")
	}
	if err := os.WriteFile(path, []byte("second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if code("second") != 200 || code("first") != 401 {
		t.Fatalf("after rotation: second %d, first %d; want 200, 401", code("second"), code("first"))
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(cfg); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("reload with an empty token file: %v, want an error naming it", err)
	}
	if code("second") != 200 {
		t.Fatal("a failed re-read dropped the running token")
	}
}
