package bench

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/tether-lb/tether/tlsterm/tlstest"
)

// compareTLS reports whether scenario runs against the peers' TLS
// listeners.
func compareTLS(scenario string) bool {
	switch scenario {
	case CompareWSS, CompareTLSRSA, CompareTLSECDSA, CompareIdleWSS:
		return true
	}
	return false
}

// certPair is a certificate that every peer of a TLS run serves.
type certPair struct {
	Cert, Key string // PEM files: tether's --cert/--key, nginx's ssl_certificate(_key)
	PEM       string // the certificate and its key in one file, as HAProxy's crt wants
}

// writeCompareCerts writes a self-signed RSA-2048 and an ECDSA P-256
// certificate for localhost and 127.0.0.1 into dir and returns the
// certificate of each TLS scenario: wss-echo and idle-wss use the ECDSA one.
func writeCompareCerts(dir string) (map[string]*certPair, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	pair := func(rsa bool) (*certPair, error) {
		cert, key, err := tlstest.WritePair(dir, tlstest.Leaf{Names: []string{"localhost", "127.0.0.1"}, RSA: rsa})
		if err != nil {
			return nil, fmt.Errorf("certificates: %w", err)
		}
		c := &certPair{Cert: cert, Key: key, PEM: filepath.Join(dir, filepath.Base(cert)+".pem")}
		var both []byte
		for _, f := range []string{cert, key} {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("certificates: %w", err)
			}
			both = append(both, b...)
		}
		if err := os.WriteFile(c.PEM, both, 0o600); err != nil {
			return nil, fmt.Errorf("certificates: %w", err)
		}
		return c, nil
	}
	rsa, err := pair(true)
	if err != nil {
		return nil, err
	}
	ec, err := pair(false)
	if err != nil {
		return nil, err
	}
	return map[string]*certPair{CompareTLSRSA: rsa, CompareTLSECDSA: ec, CompareWSS: ec, CompareIdleWSS: ec}, nil
}
