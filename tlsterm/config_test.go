package tlsterm

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tether-lb/tether/tlsterm/tlstest"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	pair := []CertFile{{Cert: "site.crt", Key: "site.key"}}
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" = valid
	}{
		{"no TLS", Config{}, ""},
		{"listener with a pair", Config{Listen: "127.0.0.1:8443", Certs: pair}, ""},
		{"listener self-signed", Config{Listen: ":8443", SelfSigned: true}, ""},
		{"bridging only", Config{BackendCA: "ca.pem"}, ""},
		{"min 1.3", Config{Listen: ":8443", Certs: pair, MinVersion: "1.3"}, ""},
		{"no certificate", Config{Listen: ":8443"}, "--tls-listen: needs --cert"},
		{"cert without key", Config{Listen: ":8443", Certs: []CertFile{{Cert: "a.crt"}}}, "--cert a.crt: no --key"},
		{"key without cert", Config{Listen: ":8443", Certs: []CertFile{{Key: "a.key"}}}, "--key a.key: no --cert"},
		{"cert without listener", Config{Certs: pair}, "--cert site.crt: no --tls-listen"},
		{"self-signed without listener", Config{SelfSigned: true}, "--tls-self-signed: no --tls-listen"},
		{"self-signed and cert", Config{Listen: ":8443", Certs: pair, SelfSigned: true}, "--tls-self-signed: not with --cert"},
		{"min 1.1", Config{Listen: ":8443", Certs: pair, MinVersion: "1.1"}, `--tls-min "1.1"`},
		{"negative timeout", Config{HandshakeTimeout: -time.Second}, "--tls-handshake-timeout"},
		{"insecure with CA", Config{BackendCA: "ca.pem", BackendInsecure: true}, "--backend-insecure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			cfg.SetDefaults()
			err := cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSetDefaults(t *testing.T) {
	t.Parallel()
	var c Config
	c.SetDefaults()
	if c.MinVersion != "1.2" || c.HandshakeTimeout != 10*time.Second || c.MaxHandshakes <= 0 {
		t.Fatalf("defaults = %+v", c)
	}
	c = Config{MaxHandshakes: -1, HandshakeTimeout: time.Second, MinVersion: "1.3"}
	c.SetDefaults()
	if c.MaxHandshakes != -1 || c.HandshakeTimeout != time.Second || c.MinVersion != "1.3" {
		t.Fatalf("SetDefaults changed set values: %+v", c)
	}
}

// TestClientConfig bridges to a node behind TLS: verified against
// --backend-ca, refused with another CA or the system roots, accepted
// unverified with --backend-insecure.
func TestClientConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := tlstest.NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlstest.NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.WritePair(dir, tlstest.Leaf{Names: []string{"node.internal", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	// The node: a plain TLS server with the CA-signed leaf, echoing.
	nodeCerts := loadCerts(t, &Config{Listen: ":0", Certs: []CertFile{{Cert: certFile, Key: keyFile}}})
	node := startEcho(t, NewHandshaker(&Config{}, nodeCerts.ServerConfig()))

	tests := []struct {
		name       string
		cfg        Config
		serverName string
		wantErr    func(error) bool // nil: the handshake succeeds
	}{
		{"backend CA", Config{BackendCA: ca.CertFile}, "node.internal", nil},
		{"backend CA by IP", Config{BackendCA: ca.CertFile}, "127.0.0.1", nil},
		{"other CA", Config{BackendCA: other.CertFile}, "node.internal", isUnknownAuthority},
		{"system roots", Config{}, "node.internal", isUnknownAuthority},
		{"wrong host name", Config{BackendCA: ca.CertFile}, "other.internal", isHostname},
		{"insecure", Config{BackendInsecure: true}, "node.internal", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tc, err := ClientConfig(&tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			tc = tc.Clone()
			tc.ServerName = tt.serverName
			c, err := dial(t, node.addr(), tc)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
					t.Errorf("ALPN = %q, want http/1.1", p)
				}
				exchange(t, c, "ping")
				return
			}
			if err == nil || !tt.wantErr(err) {
				t.Fatalf("dial error = %v (%T)", err, err)
			}
		})
	}
}

func isUnknownAuthority(err error) bool {
	_, ok := errors.AsType[x509.UnknownAuthorityError](err)
	return ok
}

func isHostname(err error) bool {
	_, ok := errors.AsType[x509.HostnameError](err)
	return ok
}

func TestClientConfigBadCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, file := range map[string]string{
		"missing": filepath.Join(dir, "missing.pem"),
		"not PEM": garbage,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ClientConfig(&Config{BackendCA: file})
			fe := asFileError(t, err)
			if fe.Flag != "--backend-ca" || fe.File != file || !strings.HasPrefix(err.Error(), "--backend-ca "+file+": ") {
				t.Fatalf("error = %q", err)
			}
		})
	}
}

// TestMaxHandshakesDefaultStable: the default is counted from the
// processors at start, not those of the moment (--procs auto may have
// tether on one when a reload applies the defaults again).
func TestMaxHandshakesDefaultStable(t *testing.T) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	var c Config
	c.SetDefaults()
	if c.MaxHandshakes != 2*startProcs {
		t.Errorf("MaxHandshakes %d on one processor, want 2 × %d as at start", c.MaxHandshakes, startProcs)
	}
}
