package tlsterm

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/tether-lb/tether/tlsterm/tlstest"
)

// BenchmarkHandshake is one full (or resumed) handshake over net.Pipe, client
// and server both in the loop. direct is the baseline: crypto/tls's
// tls.Server without Handshaker's first-record read, slot and deadlines.
func BenchmarkHandshake(b *testing.B) {
	dir := b.TempDir()
	for _, key := range []struct {
		name string
		rsa  bool
	}{{"ECDSA", false}, {"RSA", true}} {
		cert, keyFile, err := tlstest.WritePair(dir, tlstest.Leaf{Names: []string{"site.test"}, RSA: key.rsa})
		if err != nil {
			b.Fatal(err)
		}
		cfg := &Config{Listen: ":0", Certs: []CertFile{{Cert: cert, Key: keyFile}}}
		tlsCfg := loadCerts(b, cfg).ServerConfig()
		hs := NewHandshaker(cfg, tlsCfg)
		for _, mode := range []string{"full", "resumed"} {
			client := clientFor("site.test")
			if mode == "resumed" {
				client.ClientSessionCache = tls.NewLRUClientSessionCache(1)
				benchHandshake(b, client, func(srv net.Conn) (*tls.Conn, error) { // seed the cache
					return hs.Handshake(context.Background(), srv)
				})
			}
			b.Run(key.name+"/"+mode+"/handshaker", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					benchHandshake(b, client, func(srv net.Conn) (*tls.Conn, error) {
						return hs.Handshake(context.Background(), srv)
					})
				}
			})
			b.Run(key.name+"/"+mode+"/direct", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					benchHandshake(b, client, func(srv net.Conn) (*tls.Conn, error) {
						c := tls.Server(srv, tlsCfg)
						return c, c.Handshake()
					})
				}
			})
		}
	}
}

// benchHandshake runs one client handshake against server over net.Pipe;
// the client reads until the server closes, taking its session ticket.
func benchHandshake(b *testing.B, client *tls.Config, server func(net.Conn) (*tls.Conn, error)) {
	srv, cli := net.Pipe()
	done := make(chan error, 1)
	go func() {
		tc := tls.Client(cli, client)
		err := tc.Handshake()
		if err == nil {
			var buf [64]byte
			_, _ = tc.Read(buf[:])
		}
		cli.Close()
		done <- err
	}()
	conn, err := server(srv)
	if err != nil {
		b.Fatal(err)
	}
	conn.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
