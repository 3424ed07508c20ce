package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
)

// Config is the TLS part of tether's configuration; proxy.Config nests it as
// TLS. Like the rest of the configuration it is built once by cmd/tether and
// never mutated while running: a reload builds a new value.
type Config struct {
	// Listen is the --tls-listen address ("127.0.0.1:8443"). Empty means no
	// TLS listener; Certs and SelfSigned are then unused.
	Listen string

	// Certs are the --cert/--key pairs, in the order given. SNI picks the
	// pair whose names match the client's server name (exact names first,
	// then wildcards); the first pair serves everything else. Empty means
	// none, which needs SelfSigned when Listen is set.
	Certs []CertFile

	// SelfSigned (--tls-self-signed) generates, at start, one ECDSA P-256
	// certificate for localhost, 127.0.0.1 and ::1, valid for a year, and
	// logs its SHA-256 fingerprint. For demos and tests; not with Certs.
	SelfSigned bool

	// MinVersion is --tls-min: "1.2" or "1.3". Empty means "1.2".
	MinVersion string

	// HandshakeTimeout bounds one handshake, from the first byte awaited to
	// the client's Finished, waiting for a slot (MaxHandshakes) included.
	// Zero means 10s.
	HandshakeTimeout time.Duration

	// MaxHandshakes caps handshakes doing the server's crypto at once. A
	// slot is taken once the client's first record has fully arrived and
	// given back when the server's first flight is written, so it covers
	// CPU time only (a few tenths of a millisecond with ECDSA, post-quantum
	// key exchange included; about 1.5 ms more with RSA-2048), never a wait
	// for the client. A handshake waiting for a slot waits within its
	// HandshakeTimeout (ErrBusy after). Zero means 2 × GOMAXPROCS as the
	// process started (startProcs): enough to keep every core busy with
	// handshakes, not enough to queue many of them ahead of established
	// sessions. -1 means no cap; below -1 is invalid.
	MaxHandshakes int

	// BackendCA is --backend-ca: a PEM file of CA certificates that https
	// nodes are verified against. Empty means the system roots.
	BackendCA string

	// BackendInsecure (--backend-insecure) skips verification of https
	// nodes. For labs; the caller logs a warning at start.
	BackendInsecure bool
}

// CertFile is one --cert/--key pair of PEM files. Cert may hold the chain
// after the leaf.
type CertFile struct {
	Cert string
	Key  string
}

// FileError is a certificate, key or CA file that cannot be used: unreadable,
// not PEM, a key that does not match its certificate, an expired certificate.
// It is a configuration error (exit 2); its text names the flag and the file:
// "--cert site.crt: expired at 2025-01-02T00:00:00Z".
type FileError struct {
	Flag string // "--cert", "--key" or "--backend-ca"
	File string
	Err  error
}

func (e *FileError) Error() string { return e.Flag + " " + e.File + ": " + e.Err.Error() }

func (e *FileError) Unwrap() error { return e.Err }

// SetDefaults fills zero fields with their documented defaults.
func (c *Config) SetDefaults() {
	if c.MinVersion == "" {
		c.MinVersion = "1.2"
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.MaxHandshakes == 0 {
		c.MaxHandshakes = 2 * startProcs
	}
}

// startProcs is GOMAXPROCS as the process started: the default's base,
// the same at every reload, while tether's processors follow its load
// (--procs auto).
var startProcs = runtime.GOMAXPROCS(0)

// Validate reports the first bad value, naming its flag. It reads no file:
// LoadCerts and ClientConfig do, and report a *FileError. The listen
// address is the caller's to check, with its other listeners.
func (c *Config) Validate() error {
	for i, p := range c.Certs {
		switch {
		case p.Cert == "":
			return fmt.Errorf("--key %s: no --cert before it (pair %d)", p.Key, i+1)
		case p.Key == "":
			return fmt.Errorf("--cert %s: no --key after it (pair %d)", p.Cert, i+1)
		}
	}
	switch {
	case c.SelfSigned && len(c.Certs) > 0:
		return errors.New("--tls-self-signed: not with --cert")
	case c.Listen != "" && len(c.Certs) == 0 && !c.SelfSigned:
		return errors.New("--tls-listen: needs --cert and --key, or --tls-self-signed")
	case c.Listen == "" && len(c.Certs) > 0:
		return fmt.Errorf("--cert %s: no --tls-listen to serve it on", c.Certs[0].Cert)
	case c.Listen == "" && c.SelfSigned:
		return errors.New("--tls-self-signed: no --tls-listen to serve it on")
	}
	if _, err := c.minVersion(); err != nil {
		return err
	}
	if c.HandshakeTimeout < 0 {
		return fmt.Errorf("--tls-handshake-timeout %s: must not be negative", c.HandshakeTimeout)
	}
	if c.BackendInsecure && c.BackendCA != "" {
		return errors.New("--backend-insecure: not with --backend-ca")
	}
	return nil
}

// minVersion maps MinVersion to its crypto/tls constant.
func (c *Config) minVersion() (uint16, error) {
	switch c.MinVersion {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("--tls-min %q: use 1.2 or 1.3", c.MinVersion)
}

// cipherSuites are the TLS 1.2 suites tether offers and accepts: ECDHE key
// exchange (forward secrecy) with AEAD ciphers only. TLS 1.3 suites are all
// AEAD and not configurable. Go's defaults also hold the CBC-SHA suites.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// alpn is what tether speaks over TLS, to clients and to nodes.
var alpn = []string{"http/1.1"}

// clientSessions is the size of the bridging side's session cache: one entry
// per node host name is enough; a few more cover renamed nodes after reload.
const clientSessions = 256

// ClientConfig builds the client-side TLS config for bridging to https nodes:
// verified against BackendCA (or the system roots), or not at all when
// BackendInsecure; TLS 1.2 at least; ALPN http/1.1; a session cache so pooled
// reconnects resume. The caller (pool) clones it per node and sets ServerName
// to the node's host name. A bad BackendCA is a *FileError.
func ClientConfig(cfg *Config) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		CipherSuites:       cipherSuites,
		NextProtos:         alpn,
		InsecureSkipVerify: cfg.BackendInsecure,
		ClientSessionCache: tls.NewLRUClientSessionCache(clientSessions),
	}
	if cfg.BackendCA == "" || cfg.BackendInsecure {
		return tc, nil
	}
	pemBytes, err := os.ReadFile(cfg.BackendCA)
	if err != nil {
		return nil, &FileError{Flag: "--backend-ca", File: cfg.BackendCA, Err: err}
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		return nil, &FileError{Flag: "--backend-ca", File: cfg.BackendCA, Err: errors.New("no PEM certificate in it")}
	}
	tc.RootCAs = roots
	return tc, nil
}
