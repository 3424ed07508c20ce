// Package tlstest writes certificates and keys for tether's tests: self-signed
// pairs for the TLS listener (SNI, reload, bad files) and a small CA with
// leaves it signs, for nodes behind TLS verified with --backend-ca.
//
// Files go in a directory the test owns (t.TempDir()), as PEM, under unique
// names. Keys are ECDSA P-256 unless a Leaf asks for RSA-2048. Not for
// production use.
package tlstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Leaf describes a certificate to write.
type Leaf struct {
	// Names are DNS names ("a.example.com", "*.example.com") and IP
	// addresses ("127.0.0.1"); the first is also the Common Name. Empty
	// means "localhost", "127.0.0.1" and "::1".
	Names []string
	// NotBefore zero means an hour ago.
	NotBefore time.Time
	// NotAfter zero means a day after now; a past time writes an expired
	// certificate.
	NotAfter time.Time
	// RSA selects an RSA-2048 key instead of ECDSA P-256.
	RSA bool
}

// WritePair writes a self-signed certificate and its key for l into dir and
// returns the two file names.
func WritePair(dir string, l Leaf) (certFile, keyFile string, err error) {
	return writeLeaf(dir, l, nil, nil)
}

// WriteTestPair is WritePair for the common case: names, an expiry, and the
// key type.
func WriteTestPair(dir string, names []string, notAfter time.Time, ecdsaKey bool) (certFile, keyFile string, err error) {
	return WritePair(dir, Leaf{Names: names, NotAfter: notAfter, RSA: !ecdsaKey})
}

// CA is a test certificate authority: its certificate is in CertFile (the
// --backend-ca file of a test), and it signs leaves with WritePair.
type CA struct {
	CertFile string
	Cert     *x509.Certificate
	key      crypto.Signer
}

// NewCA creates a CA valid for a day and writes its certificate into dir.
func NewCA(dir string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "tether test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	f, err := writePEM(dir, "ca-*.crt", "CERTIFICATE", der)
	if err != nil {
		return nil, err
	}
	return &CA{CertFile: f, Cert: cert, key: key}, nil
}

// WritePair writes a leaf for l signed by the CA, and its key, into dir.
func (ca *CA) WritePair(dir string, l Leaf) (certFile, keyFile string, err error) {
	return writeLeaf(dir, l, ca.Cert, ca.key)
}

// Pool is a cert pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// writeLeaf writes l, signed by parent (nil: self-signed), and its key.
func writeLeaf(dir string, l Leaf, parent *x509.Certificate, parentKey crypto.Signer) (certFile, keyFile string, err error) {
	var key crypto.Signer
	if l.RSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return "", "", err
	}
	names := l.Names
	if len(names) == 0 {
		names = []string{"localhost", "127.0.0.1", "::1"}
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: names[0]},
		NotBefore:             l.NotBefore,
		NotAfter:              l.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if l.RSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = now.Add(24 * time.Hour)
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = now.Add(-time.Hour)
		if tmpl.NotAfter.Before(now) {
			tmpl.NotBefore = tmpl.NotAfter.Add(-time.Hour)
		}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	base := strings.NewReplacer("*", "star", ":", "_").Replace(names[0])
	if certFile, err = writePEM(dir, base+"-*.crt", "CERTIFICATE", der); err != nil {
		return "", "", err
	}
	keyFile = strings.TrimSuffix(certFile, ".crt") + ".key"
	if err := os.WriteFile(keyFile, pemBytes("PRIVATE KEY", keyDER), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// writePEM writes one PEM block into a new file of dir named after pattern.
func writePEM(dir, pattern, typ string, der []byte) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(pemBytes(typ, der)); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return filepath.Clean(f.Name()), nil
}

func pemBytes(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// serial is a random 127-bit serial number.
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("tlstest: serial: %v", err))
	}
	return n
}
