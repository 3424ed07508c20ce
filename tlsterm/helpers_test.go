package tlsterm

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/tlsterm/tlstest"
)

// ioTimeout bounds every network wait of a test on loopback; nothing waits
// for it in a passing run.
const ioTimeout = 10 * time.Second

// writePair writes a self-signed ECDSA pair for names into dir.
func writePair(t testing.TB, dir string, names ...string) CertFile {
	t.Helper()
	cert, key, err := tlstest.WritePair(dir, tlstest.Leaf{Names: names})
	if err != nil {
		t.Fatal(err)
	}
	return CertFile{Cert: cert, Key: key}
}

// leafOf parses the certificate of a pair, to compare with what a client was
// served.
func leafOf(t testing.TB, p CertFile) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf
}

// loadCerts is LoadCerts for a test, closed at its end.
func loadCerts(t testing.TB, cfg *Config) *Certs {
	t.Helper()
	c, err := LoadCerts(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// echoServer accepts on loopback, runs Handshake in each connection's
// goroutine, then echoes. Handshake errors go to errs (dropped when full).
type echoServer struct {
	ln    net.Listener
	hs    *Handshaker
	errs  chan error
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn // guarded by mu
}

func startEcho(t testing.TB, hs *Handshaker) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, hs: hs, errs: make(chan error, 16)}
	s.wg.Go(s.acceptLoop)
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

func (s *echoServer) acceptLoop() {
	for {
		raw, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, raw)
		s.mu.Unlock()
		s.wg.Go(func() { s.serve(raw) })
	}
}

func (s *echoServer) serve(raw net.Conn) {
	defer raw.Close()
	conn, err := s.hs.Handshake(context.Background(), raw)
	if err != nil {
		select {
		case s.errs <- err:
		default:
		}
		return
	}
	_, _ = io.Copy(conn, conn)
}

// dial connects a TLS client to addr.
func dial(t testing.TB, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c.(*tls.Conn), nil
}

// clientFor is a client config that accepts any certificate (the tests check
// which one they were served) for server name.
func clientFor(name string) *tls.Config {
	return &tls.Config{ServerName: name, InsecureSkipVerify: true}
}

// exchange writes msg and reads it back from an echo server.
func exchange(t testing.TB, c *tls.Conn, msg string) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, []byte(msg)) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// served is the leaf a client got.
func served(c *tls.Conn) *x509.Certificate { return c.ConnectionState().PeerCertificates[0] }

// stallConn is a client conn that stalls until release is closed: at its
// second Write (the client's Finished, or the change_cipher_spec before it),
// or, with deaf set, at its first Read (the server's first flight then
// cannot be written on a net.Pipe, and the server holds its slot).
type stallConn struct {
	net.Conn
	deaf    bool
	writes  int
	reads   int
	release <-chan struct{}
}

func (c *stallConn) Write(p []byte) (int, error) {
	if c.writes++; c.writes == 2 && !c.deaf {
		<-c.release
	}
	return c.Conn.Write(p)
}

func (c *stallConn) Read(p []byte) (int, error) {
	if c.reads++; c.reads == 1 && c.deaf {
		<-c.release
	}
	return c.Conn.Read(p)
}

// asFileError returns err's *FileError or fails.
func asFileError(t testing.TB, err error) *FileError {
	t.Helper()
	fe, ok := errors.AsType[*FileError](err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *FileError", err, err)
	}
	return fe
}
