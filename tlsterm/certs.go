package tlsterm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

const (
	// ticketRotation is how often a new session-ticket key starts sealing
	// tickets; ticketKeys is how many keys (the newest first) still open
	// them. A ticket therefore resumes for 24 to 36 hours, and a leaked key
	// exposes at most that window of TLS 1.2 resumptions.
	ticketRotation = 12 * time.Hour
	ticketKeys     = 3

	// expirySoon is how close to NotAfter a loaded certificate draws a
	// warning.
	expirySoon = 14 * 24 * time.Hour
)

// Certs is the served certificate set and the server-side tls.Config that
// serves it. GetCertificate reads the set with one atomic load; Reload builds a
// new set and swaps it, so new handshakes get the new certificates while
// established connections, which never look at the set again, are untouched.
//
// Certs owns one goroutine, ticketLoop, that rotates session-ticket keys;
// Close stops it. All methods are safe for concurrent use.
type Certs struct {
	set    atomic.Pointer[certSet]
	tlsCfg *tls.Config
	log    zerolog.Logger

	mu         sync.Mutex       // serializes Reload; guards selfSigned
	selfSigned *tls.Certificate // generated once, kept across reloads

	keys [][32]byte // ticket keys, newest first; only touched by rotateTicketKeys

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// certSet is one immutable generation of served certificates.
type certSet struct {
	exact    map[string]*tls.Certificate // lower-case DNS name → first pair naming it
	wildcard map[string]*tls.Certificate // "example.com" for "*.example.com"
	def      *tls.Certificate            // the first pair
}

// LoadCerts reads and checks every --cert/--key pair (or generates the
// self-signed certificate), builds the name index and the server tls.Config,
// and starts ticket-key rotation. A pair that cannot be served (unreadable
// file, not PEM, key not matching its certificate, certificate expired or not
// yet valid) is a *FileError naming the file. The caller calls Close.
func LoadCerts(cfg *Config, log zerolog.Logger) (*Certs, error) {
	minVer, err := cfg.minVersion()
	if err != nil {
		return nil, err
	}
	c := &Certs{log: log, stop: make(chan struct{})}
	set, err := c.build(cfg)
	if err != nil {
		return nil, err
	}
	c.set.Store(set)
	c.tlsCfg = &tls.Config{
		MinVersion:     minVer,
		CipherSuites:   cipherSuites,
		NextProtos:     alpn,
		GetCertificate: c.GetCertificate,
	}
	if err := c.rotateTicketKeys(); err != nil {
		return nil, err
	}
	c.wg.Go(c.ticketLoop)
	return c, nil
}

// Reload re-reads the certificate files named by cfg (which may differ from
// the ones loaded before) and swaps the served set. On error the old set
// stays served and the error, a *FileError, says why. TLS settings other than
// the certificates (MinVersion) keep their start-up values.
func (c *Certs) Reload(cfg *Config) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	set, err := c.build(cfg)
	if err != nil {
		return err
	}
	c.set.Store(set)
	c.log.Info().Int("certs", len(cfg.Certs)).Msg("certificates reloaded")
	return nil
}

// GetCertificate picks the certificate for a client's server name (SNI): an
// exact name, then a wildcard one label deep ("*.example.com" serves
// "a.example.com", neither "example.com" nor "a.b.example.com"), then the
// first pair. It is tls.Config.GetCertificate and never returns an error.
func (c *Certs) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.set.Load().pick(hello.ServerName), nil
}

// ServerConfig is the server-side TLS config: the configured minimum version,
// ECDHE+AEAD suites only for TLS 1.2, ALPN http/1.1, session tickets with
// rotating keys, certificates from GetCertificate. It is shared: do not
// modify it (Clone it for a variant).
func (c *Certs) ServerConfig() *tls.Config { return c.tlsCfg }

// Close stops ticket-key rotation and waits for it. Handshakes may go on
// with the last keys. Calling it twice is harmless.
func (c *Certs) Close() {
	c.closeOnce.Do(func() { close(c.stop) })
	c.wg.Wait()
}

// ticketLoop rotates session-ticket keys every ticketRotation until Close.
func (c *Certs) ticketLoop() {
	t := time.NewTicker(ticketRotation)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if err := c.rotateTicketKeys(); err != nil {
				c.log.Error().Err(err).Msg("session ticket key rotation")
			}
		}
	}
}

// rotateTicketKeys puts a fresh random key first and drops the oldest past
// ticketKeys. Only called from LoadCerts (before ticketLoop starts) and from
// ticketLoop.
func (c *Certs) rotateTicketKeys() error {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return fmt.Errorf("session ticket key: %w", err)
	}
	keys := make([][32]byte, 0, ticketKeys)
	keys = append(keys, k)
	keys = append(keys, c.keys[:min(len(c.keys), ticketKeys-1)]...)
	c.keys = keys
	c.tlsCfg.SetSessionTicketKeys(keys)
	return nil
}

// build reads cfg's pairs into a new set. Called with c.mu held, or before c
// is shared.
func (c *Certs) build(cfg *Config) (*certSet, error) {
	var certs []*tls.Certificate
	switch {
	case cfg.SelfSigned:
		if c.selfSigned == nil {
			cert, fp, err := SelfSigned()
			if err != nil {
				return nil, err
			}
			c.selfSigned = &cert
			c.log.Info().Str("sha256", fp).Time("not_after", cert.Leaf.NotAfter).
				Msg("self-signed certificate for localhost, 127.0.0.1, ::1")
		}
		certs = append(certs, c.selfSigned)
	case len(cfg.Certs) == 0:
		return nil, errors.New("--cert: none given (or --tls-self-signed)")
	}
	now := time.Now()
	for _, p := range cfg.Certs {
		cert, err := loadPair(p, now)
		if err != nil {
			return nil, err
		}
		c.logLoaded(p, cert.Leaf, now)
		certs = append(certs, cert)
	}
	return newCertSet(certs), nil
}

// logLoaded logs one loaded pair, with a warning when it expires soon or can
// never be picked by name.
func (c *Certs) logLoaded(p CertFile, leaf *x509.Certificate, now time.Time) {
	names := leafNames(leaf)
	switch {
	case leaf.NotAfter.Sub(now) < expirySoon:
		c.log.Warn().Str("cert", p.Cert).Strs("names", names).Time("not_after", leaf.NotAfter).
			Msg("certificate expires soon")
	case len(names) == 0:
		c.log.Warn().Str("cert", p.Cert).Msg("certificate has no DNS names: served only as the default")
	default:
		c.log.Info().Str("cert", p.Cert).Strs("names", names).Time("not_after", leaf.NotAfter).
			Msg("certificate loaded")
	}
}

// loadPair reads one pair and checks it can be served at now.
func loadPair(p CertFile, now time.Time) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(p.Cert)
	if err != nil {
		return nil, &FileError{Flag: "--cert", File: p.Cert, Err: err}
	}
	keyPEM, err := os.ReadFile(p.Key)
	if err != nil {
		return nil, &FileError{Flag: "--key", File: p.Key, Err: err}
	}
	leaf, err := parseLeaf(certPEM)
	if err != nil {
		return nil, &FileError{Flag: "--cert", File: p.Cert, Err: err}
	}
	if now.After(leaf.NotAfter) {
		return nil, &FileError{Flag: "--cert", File: p.Cert,
			Err: fmt.Errorf("expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))}
	}
	if now.Before(leaf.NotBefore) {
		return nil, &FileError{Flag: "--cert", File: p.Cert,
			Err: fmt.Errorf("not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))}
	}
	// The certificate parsed above, so what fails here is the key: not PEM,
	// not a key, or not the certificate's.
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, &FileError{Flag: "--key", File: p.Key, Err: fmt.Errorf("%w (pair of --cert %s)", err, p.Cert)}
	}
	return &cert, nil
}

// parseLeaf parses the first certificate of a PEM file.
func parseLeaf(certPEM []byte) (*x509.Certificate, error) {
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM certificate in it")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// leafNames are the DNS names a certificate serves: its SAN DNS names, or
// its Common Name when it has none (legacy certificates).
func leafNames(leaf *x509.Certificate) []string {
	if len(leaf.DNSNames) > 0 {
		return leaf.DNSNames
	}
	if cn := leaf.Subject.CommonName; cn != "" && !strings.ContainsAny(cn, " /:@") && net.ParseIP(cn) == nil {
		return []string{cn}
	}
	return nil
}

// newCertSet indexes certs by name; for a name several pairs list, the
// earliest wins. certs[0] is the default.
func newCertSet(certs []*tls.Certificate) *certSet {
	s := &certSet{
		exact:    make(map[string]*tls.Certificate),
		wildcard: make(map[string]*tls.Certificate),
		def:      certs[0],
	}
	for _, cert := range certs {
		for _, n := range leafNames(cert.Leaf) {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			idx := s.exact
			if base, ok := strings.CutPrefix(n, "*."); ok {
				n, idx = base, s.wildcard
			}
			if _, dup := idx[n]; !dup {
				idx[n] = cert
			}
		}
	}
	return s
}

// pick is GetCertificate's lookup: exact, wildcard, default.
func (s *certSet) pick(name string) *tls.Certificate {
	if name == "" {
		return s.def
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if cert, ok := s.exact[name]; ok {
		return cert
	}
	if _, parent, ok := strings.Cut(name, "."); ok {
		if cert, ok := s.wildcard[parent]; ok {
			return cert
		}
	}
	return s.def
}

// SelfSigned generates an ECDSA P-256 certificate for localhost, 127.0.0.1
// and ::1, valid from an hour ago for a year, and returns it with its SHA-256
// fingerprint ("AB:CD:…", as openssl x509 -fingerprint -sha256 prints it).
func SelfSigned() (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("self-signed key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("self-signed serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "tether self-signed", Organization: []string{"tether"}},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, Fingerprint(der), nil
}

// Fingerprint is the SHA-256 of a DER certificate as colon-separated
// upper-case hex.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}
