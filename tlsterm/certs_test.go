package tlsterm

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/tlsterm/tlstest"
)

// TestSNI checks the pick order (exact, then a one-label wildcard, then the
// first pair) with two and three pairs, through GetCertificate and, for the
// three-pair set, through real handshakes.
func TestSNI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	def := writePair(t, dir, "default.test")
	exact := writePair(t, dir, "a.example.com")
	wild := writePair(t, dir, "*.example.com")
	dupe := writePair(t, dir, "a.example.com", "dupe.test")

	type pick struct{ sni, want string }
	sets := []struct {
		name  string
		pairs []CertFile
		picks []pick
	}{
		{"three pairs, wildcard listed before exact", []CertFile{def, wild, exact}, []pick{
			{"a.example.com", "exact"},
			{"A.Example.COM.", "exact"},
			{"b.example.com", "wild"},
			{"x.b.example.com", "def"},
			{"example.com", "def"},
			{"default.test", "def"},
			{"other.test", "def"},
			{"", "def"},
		}},
		{"two pairs, default and wildcard", []CertFile{def, wild}, []pick{
			{"a.example.com", "wild"},
			{"example.com", "def"},
			{"", "def"},
		}},
		{"two pairs, exact first is default", []CertFile{exact, wild}, []pick{
			{"a.example.com", "exact"},
			{"b.example.com", "wild"},
			{"other.test", "exact"},
		}},
		{"a name in two pairs goes to the first", []CertFile{def, exact, dupe}, []pick{
			{"a.example.com", "exact"},
			{"dupe.test", "dupe"},
		}},
	}
	leaves := map[string]CertFile{"def": def, "exact": exact, "wild": wild, "dupe": dupe}
	for _, set := range sets {
		t.Run(set.name, func(t *testing.T) {
			t.Parallel()
			certs := loadCerts(t, &Config{Listen: ":0", Certs: set.pairs})
			for _, p := range set.picks {
				got, err := certs.GetCertificate(&tls.ClientHelloInfo{ServerName: p.sni})
				if err != nil {
					t.Fatal(err)
				}
				if !got.Leaf.Equal(leafOf(t, leaves[p.want])) {
					t.Errorf("SNI %q: served %v, want %s", p.sni, got.Leaf.DNSNames, p.want)
				}
			}
		})
	}

	t.Run("handshakes", func(t *testing.T) {
		t.Parallel()
		certs := loadCerts(t, &Config{Listen: ":0", Certs: []CertFile{def, wild, exact}})
		srv := startEcho(t, NewHandshaker(&Config{}, certs.ServerConfig()))
		for sni, want := range map[string]CertFile{"a.example.com": exact, "b.example.com": wild, "other.test": def} {
			c, err := dial(t, srv.addr(), clientFor(sni))
			if err != nil {
				t.Fatal(err)
			}
			if !served(c).Equal(leafOf(t, want)) {
				t.Errorf("SNI %q: served %v", sni, served(c).DNSNames)
			}
			exchange(t, c, "hello "+sni)
		}
	})
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := writePair(t, dir, "good.test")
	other := writePair(t, dir, "other.test")
	exCert, exKey, err := tlstest.WritePair(dir, tlstest.Leaf{Names: []string{"old.test"}, NotAfter: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	futCert, futKey, err := tlstest.WritePair(dir, tlstest.Leaf{Names: []string{"new.test"},
		NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(48 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN NOTHING-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.crt")

	tests := []struct {
		name  string
		pairs []CertFile
		flag  string
		file  string
		text  string
	}{
		{"cert missing", []CertFile{{missing, good.Key}}, "--cert", missing, "no such file"},
		{"cert is a directory", []CertFile{{dir, good.Key}}, "--cert", dir, "is a directory"},
		{"key missing", []CertFile{{good.Cert, missing}}, "--key", missing, "no such file"},
		{"cert not PEM", []CertFile{{garbage, good.Key}}, "--cert", garbage, "no PEM certificate"},
		{"key not PEM", []CertFile{{good.Cert, garbage}}, "--key", garbage, "PEM"},
		{"key of another cert", []CertFile{{good.Cert, other.Key}}, "--key", other.Key, "does not match"},
		{"expired", []CertFile{{exCert, exKey}}, "--cert", exCert, "expired at"},
		{"not yet valid", []CertFile{{futCert, futKey}}, "--cert", futCert, "not valid before"},
		{"second pair bad", []CertFile{good, {exCert, exKey}}, "--cert", exCert, "expired at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadCerts(&Config{Listen: ":0", Certs: tt.pairs}, zerolog.Nop())
			fe := asFileError(t, err)
			prefix := tt.flag + " " + tt.file + ": "
			if fe.Flag != tt.flag || fe.File != tt.file || !strings.HasPrefix(err.Error(), prefix) ||
				!strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error = %q, want %q…%q", err, prefix, tt.text)
			}
		})
	}
}

// TestReload swaps the certificate for new handshakes while an established
// connection keeps working, and keeps the old set when a reload fails.
func TestReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := writePair(t, dir, "site.test")
	second := writePair(t, dir, "site.test")
	firstLeaf, secondLeaf := leafOf(t, first), leafOf(t, second)

	// The served pair's files, rewritten in place as a renewal does.
	site := CertFile{Cert: filepath.Join(dir, "site.crt"), Key: filepath.Join(dir, "site.key")}
	install := func(p CertFile) {
		t.Helper()
		for src, dst := range map[string]string{p.Cert: site.Cert, p.Key: site.Key} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(first)
	cfg := &Config{Listen: ":0", Certs: []CertFile{site}}
	certs := loadCerts(t, cfg)
	srv := startEcho(t, NewHandshaker(cfg, certs.ServerConfig()))

	old, err := dial(t, srv.addr(), clientFor("site.test"))
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, old, "before reload")
	if !served(old).Equal(firstLeaf) {
		t.Fatal("first connection not served the first certificate")
	}

	install(second)
	if err := certs.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	fresh, err := dial(t, srv.addr(), clientFor("site.test"))
	if err != nil {
		t.Fatal(err)
	}
	if !served(fresh).Equal(secondLeaf) {
		t.Fatal("new connection after reload not served the new certificate")
	}
	exchange(t, fresh, "new connection")
	exchange(t, old, "old connection after reload")

	t.Run("failed reload keeps the old set", func(t *testing.T) {
		for name, bad := range map[string]*Config{
			"missing file":   {Listen: ":0", Certs: []CertFile{{Cert: filepath.Join(dir, "gone.crt"), Key: site.Key}}},
			"key mismatch":   {Listen: ":0", Certs: []CertFile{{Cert: site.Cert, Key: first.Key}}},
			"no pair at all": {Listen: ":0"},
		} {
			if err := certs.Reload(bad); err == nil {
				t.Fatalf("%s: Reload = nil, want an error", name)
			}
			c, err := dial(t, srv.addr(), clientFor("site.test"))
			if err != nil {
				t.Fatal(err)
			}
			if !served(c).Equal(secondLeaf) {
				t.Fatalf("%s: a failed reload changed the served certificate", name)
			}
			exchange(t, c, "after a failed reload")
		}
		exchange(t, old, "old connection still")
	})
}

// TestResumption: a second connection with a client session cache resumes
// from the ticket of the first, with TLS 1.2 and 1.3; once its key has
// rotated out, it cannot.
func TestResumption(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := &Config{Listen: ":0", Certs: []CertFile{writePair(t, dir, "site.test")}}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			t.Parallel()
			certs := loadCerts(t, cfg)
			hs := NewHandshaker(cfg, certs.ServerConfig())
			srv := startEcho(t, hs)
			client := clientFor("site.test")
			client.MaxVersion = v
			client.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			connect := func() bool {
				t.Helper()
				c, err := dial(t, srv.addr(), client)
				if err != nil {
					t.Fatal(err)
				}
				// A TLS 1.3 ticket arrives after the handshake: read it.
				exchange(t, c, "ticket")
				c.Close()
				return c.ConnectionState().DidResume
			}
			if connect() {
				t.Fatal("first connection resumed")
			}
			if !connect() {
				t.Fatal("second connection did not resume")
			}
			if s := hs.Stats(); s.Resumed == 0 || s.Done < 2 || s.InFlight != 0 {
				t.Errorf("stats = %+v, want Resumed > 0, Done >= 2, InFlight 0", s)
			}

			// One rotation: tickets sealed with the previous key still open.
			certs.Close()
			if err := certs.rotateTicketKeys(); err != nil {
				t.Fatal(err)
			}
			if !connect() {
				t.Fatal("no resumption after one key rotation")
			}
			// That connection got a ticket under the newest key; rotate it
			// out of the kept keys.
			for range ticketKeys {
				if err := certs.rotateTicketKeys(); err != nil {
					t.Fatal(err)
				}
			}
			if connect() {
				t.Fatal("resumed from a ticket whose key rotated out")
			}
		})
	}
}

func TestSelfSigned(t *testing.T) {
	t.Parallel()
	cert, fp, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	if len(fp) != 32*3-1 || fp != Fingerprint(cert.Certificate[0]) {
		t.Fatalf("fingerprint %q", fp)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := cert.Leaf.VerifyHostname(host); err != nil {
			t.Errorf("VerifyHostname(%s): %v", host, err)
		}
	}
	if d := time.Until(cert.Leaf.NotAfter); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("valid for %s, want a year", d)
	}

	// Served, and kept across reloads (clients may have pinned it).
	cfg := &Config{Listen: ":0", SelfSigned: true}
	certs := loadCerts(t, cfg)
	before, _ := certs.GetCertificate(&tls.ClientHelloInfo{})
	if err := certs.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	after, _ := certs.GetCertificate(&tls.ClientHelloInfo{ServerName: "localhost"})
	if before != after {
		t.Error("reload regenerated the self-signed certificate")
	}
}

// TestLoadLog: each pair is logged with its names, and a warning when it
// expires soon or no SNI name can pick it.
func TestLoadLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	year := time.Now().AddDate(1, 0, 0)
	tests := []struct {
		name  string
		leaf  tlstest.Leaf
		level string
		msg   string
	}{
		{"valid for a year", tlstest.Leaf{Names: []string{"site.test"}, NotAfter: year}, "info", "certificate loaded"},
		{"expires tomorrow", tlstest.Leaf{Names: []string{"site.test"}, NotAfter: time.Now().Add(24 * time.Hour)}, "warn", "certificate expires soon"},
		{"IP address only", tlstest.Leaf{Names: []string{"127.0.0.1"}, NotAfter: year}, "warn", "no DNS names"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cert, key, err := tlstest.WritePair(dir, tt.leaf)
			if err != nil {
				t.Fatal(err)
			}
			var buf strings.Builder
			c, err := LoadCerts(&Config{Listen: ":0", Certs: []CertFile{{Cert: cert, Key: key}}}, zerolog.New(&buf))
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			line := buf.String()
			if !strings.Contains(line, `"level":"`+tt.level+`"`) || !strings.Contains(line, tt.msg) ||
				!strings.Contains(line, `"cert":"`+cert+`"`) {
				t.Fatalf("log = %s, want %s %q", line, tt.level, tt.msg)
			}
		})
	}
}
