package tlstest

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"
)

func TestWritePair(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		ca     *CA
		leaf   Leaf
		verify string // host name to verify, against the CA or the leaf itself
	}{
		{"self-signed default names", nil, Leaf{}, "127.0.0.1"},
		{"self-signed wildcard RSA", nil, Leaf{Names: []string{"*.example.com"}, RSA: true}, "a.example.com"},
		{"CA-signed", ca, Leaf{Names: []string{"node.internal", "192.0.2.1"}}, "node.internal"},
		{"expired", nil, Leaf{Names: []string{"old.test"}, NotAfter: time.Now().Add(-time.Minute)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			write := WritePair
			if tt.ca != nil {
				write = tt.ca.WritePair
			}
			certFile, keyFile, err := write(dir, tt.leaf)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			leaf := pair.Leaf
			if tt.verify == "" {
				if !leaf.NotAfter.Before(time.Now()) || !leaf.NotBefore.Before(leaf.NotAfter) {
					t.Fatalf("validity %s .. %s, want expired", leaf.NotBefore, leaf.NotAfter)
				}
				return
			}
			roots := x509.NewCertPool()
			roots.AddCert(leaf)
			if tt.ca != nil {
				roots = tt.ca.Pool()
			}
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: tt.verify, Roots: roots}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
