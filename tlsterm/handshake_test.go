package tlsterm

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// pipeServerConfig is a server config for tests on net.Pipe inside a
// synctest bubble. Certificates are loaded outside the bubble, whose clock
// starts in 2000; clients there skip verification for the same reason.
func pipeServerConfig(t *testing.T) *tls.Config {
	t.Helper()
	cfg := &Config{Listen: ":0", Certs: []CertFile{writePair(t, t.TempDir(), "site.test")}}
	return loadCerts(t, cfg).ServerConfig()
}

// clientHandshake runs a client handshake on c, then reads until the server
// closes (on net.Pipe a client closing first would fail the server's last
// write), and closes c.
func clientHandshake(c net.Conn) error {
	defer c.Close()
	tc := tls.Client(c, clientFor("site.test"))
	if err := tc.Handshake(); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, tc)
	return nil
}

// TestHandshakeTimeout: a client that connects and sends nothing ends the
// handshake at HandshakeTimeout, on the fake clock and on loopback.
func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	tlsCfg := pipeServerConfig(t)
	t.Run("synctest", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			hs := NewHandshaker(&Config{HandshakeTimeout: 3 * time.Second}, tlsCfg)
			srv, cli := net.Pipe()
			defer cli.Close()
			defer srv.Close()
			start := time.Now()
			_, err := hs.Handshake(context.Background(), srv)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("err = %v, want a deadline error", err)
			}
			if d := time.Since(start); d != 3*time.Second {
				t.Fatalf("returned after %s, want 3s", d)
			}
		})
	})
	t.Run("loopback", func(t *testing.T) {
		t.Parallel()
		hs := NewHandshaker(&Config{HandshakeTimeout: 100 * time.Millisecond}, tlsCfg)
		srv := startEcho(t, hs)
		c, err := net.Dial("tcp", srv.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		select {
		case err := <-srv.errs:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("err = %v, want a deadline error", err)
			}
		case <-time.After(ioTimeout):
			t.Fatal("handshake of a silent client never ended")
		}
	})
}

// TestHandshakeCap: with one slot, a handshake whose server is still busy
// with its first flight (here: blocked writing it to a client that does not
// read) holds it; a second one waits, then either gives up at its timeout
// (ErrBusy) or proceeds once the first has written its flight. Clients that
// send nothing, or stall before their Finished, hold none.
func TestHandshakeCap(t *testing.T) {
	t.Parallel()
	tlsCfg := pipeServerConfig(t)

	// stalled starts a handshake whose client stalls (deaf: before reading
	// the server's flight; otherwise before sending its Finished), and
	// returns the release of the stall and the server's result.
	stalled := func(t *testing.T, hs *Handshaker, deaf bool) (release func(), result <-chan error) {
		srv, cli := net.Pipe()
		rel := make(chan struct{})
		res := make(chan error, 1)
		go clientHandshake(&stallConn{Conn: cli, deaf: deaf, release: rel})
		go func() {
			defer srv.Close()
			_, err := hs.Handshake(context.Background(), srv)
			res <- err
		}()
		synctest.Wait()
		want := int64(0)
		if deaf {
			want = 1
		}
		if s := hs.Stats(); s.InFlight != want {
			t.Fatalf("stalled handshake (deaf %v): InFlight = %d, want %d", deaf, s.InFlight, want)
		}
		return func() { close(rel) }, res
	}
	// second runs a plain handshake with timeout in a goroutine.
	second := func(ctx context.Context, hs *Handshaker, timeout time.Duration) <-chan error {
		srv, cli := net.Pipe()
		go clientHandshake(cli)
		res := make(chan error, 1)
		go func() {
			defer srv.Close()
			_, err := hs.handshake(ctx, srv, timeout)
			res <- err
		}()
		return res
	}

	t.Run("second times out", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			hs := NewHandshaker(&Config{MaxHandshakes: 1, HandshakeTimeout: time.Minute}, tlsCfg)
			release, first := stalled(t, hs, true)
			start := time.Now()
			if err := <-second(context.Background(), hs, time.Second); !errors.Is(err, ErrBusy) {
				t.Fatalf("second handshake: err = %v, want ErrBusy", err)
			}
			if d := time.Since(start); d != time.Second {
				t.Fatalf("second handshake gave up after %s, want 1s", d)
			}
			release()
			if err := <-first; err != nil {
				t.Fatalf("first handshake: %v", err)
			}
			if s := hs.Stats(); s.Busy != 1 || s.Done != 1 || s.InFlight != 0 || s.Waiting != 0 {
				t.Fatalf("stats = %+v", s)
			}
		})
	})

	t.Run("second proceeds after", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			hs := NewHandshaker(&Config{MaxHandshakes: 1, HandshakeTimeout: time.Minute}, tlsCfg)
			release, first := stalled(t, hs, true)
			res := second(context.Background(), hs, time.Minute)
			synctest.Wait()
			if s := hs.Stats(); s.Waiting != 1 || s.InFlight != 1 {
				t.Fatalf("stats while waiting = %+v, want 1 waiting, 1 in flight", s)
			}
			release()
			if err := <-first; err != nil {
				t.Fatalf("first handshake: %v", err)
			}
			if err := <-res; err != nil {
				t.Fatalf("second handshake: %v", err)
			}
		})
	})

	t.Run("stalled and silent clients hold no slot", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			hs := NewHandshaker(&Config{MaxHandshakes: 1, HandshakeTimeout: time.Minute}, tlsCfg)
			release, first := stalled(t, hs, false)
			silentSrv, silentCli := net.Pipe()
			silent := make(chan error, 1)
			go func() {
				defer silentSrv.Close()
				_, err := hs.Handshake(context.Background(), silentSrv)
				silent <- err
			}()
			if err := <-second(context.Background(), hs, time.Minute); err != nil {
				t.Fatalf("handshake beside stalled ones: %v", err)
			}
			release()
			if err := <-first; err != nil {
				t.Fatalf("stalled handshake, released: %v", err)
			}
			silentCli.Close()
			if err := <-silent; err == nil {
				t.Fatal("silent client's handshake succeeded")
			}
		})
	})

	t.Run("context canceled while waiting", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			hs := NewHandshaker(&Config{MaxHandshakes: 1, HandshakeTimeout: time.Minute}, tlsCfg)
			release, first := stalled(t, hs, true)
			ctx, cancel := context.WithCancel(context.Background())
			res := second(ctx, hs, time.Minute)
			synctest.Wait()
			cancel()
			if err := <-res; !errors.Is(err, context.Canceled) {
				t.Fatalf("second handshake: err = %v, want context.Canceled", err)
			}
			release()
			<-first
		})
	})
}

// TestPlainHTTP: HTTP sent to the TLS port is reported, and the raw conn is
// left usable for a plain-text 400.
func TestPlainHTTP(t *testing.T) {
	t.Parallel()
	hs := NewHandshaker(&Config{}, pipeServerConfig(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := io.WriteString(cli, "GET / HTTP/1.1\r\nHost: site.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := hs.Handshake(context.Background(), raw); !errors.Is(err, ErrPlainHTTP) {
		t.Fatalf("err = %v, want ErrPlainHTTP", err)
	}
	if _, err := io.WriteString(raw, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = cli.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := bufio.NewReader(cli).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 400") {
		t.Fatalf("client read %q, %v", line, err)
	}
	if hs.Stats().PlainHTTP != 1 {
		t.Errorf("Stats().PlainHTTP = %d", hs.Stats().PlainHTTP)
	}
}

func TestNotTLS(t *testing.T) {
	t.Parallel()
	hs := NewHandshaker(&Config{}, pipeServerConfig(t))
	for name, first := range map[string][]byte{
		"binary":          {0x00, 0x01, 0x02},
		"SSLv2 hello":     {0x80, 0x2e, 0x01},
		"alert first":     {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28},
		"CONNECT, spaced": []byte(" CONNECT"),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv, cli := net.Pipe()
			defer srv.Close()
			defer cli.Close()
			go func() { _, _ = cli.Write(first) }()
			if _, err := hs.Handshake(context.Background(), srv); !errors.Is(err, ErrNotTLS) {
				t.Fatalf("err = %v, want ErrNotTLS", err)
			}
		})
	}
}

// TestFirstRecordErrors: a client gone before its first record, or one whose
// record is longer than TLS allows, fails without a slot or a panic.
func TestFirstRecordErrors(t *testing.T) {
	t.Parallel()
	tlsCfg := pipeServerConfig(t)
	for name, first := range map[string][]byte{
		"closed at once":  nil,
		"header cut":      {0x16, 0x03},
		"record cut":      {0x16, 0x03, 0x01, 0x02, 0x00, 0x01},
		"oversize record": {0x16, 0x03, 0x01, 0xff, 0xff},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			hs := NewHandshaker(&Config{}, tlsCfg)
			srv, cli := net.Pipe()
			defer srv.Close()
			go func() {
				_, _ = cli.Write(first)
				cli.Close()
			}()
			_, err := hs.Handshake(context.Background(), srv)
			if err == nil || errors.Is(err, ErrNotTLS) || errors.Is(err, ErrPlainHTTP) {
				t.Fatalf("err = %v, want a handshake error", err)
			}
			if s := hs.Stats(); s.InFlight != 0 {
				t.Fatalf("InFlight = %d after a failed handshake", s.InFlight)
			}
		})
	}
}

// TestVersionsAndSuites: --tls-min 1.3 refuses a TLS 1.2 client; the default
// accepts it but not with a CBC suite; ALPN settles on http/1.1.
func TestVersionsAndSuites(t *testing.T) {
	t.Parallel()
	pair := writePair(t, t.TempDir(), "site.test")
	tests := []struct {
		name   string
		min    string
		client func(*tls.Config)
		ok     bool
	}{
		{"1.2 client, min 1.2", "1.2", func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }, true},
		{"1.2 client, min 1.3", "1.3", func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }, false},
		{"1.3 client, min 1.3", "1.3", func(c *tls.Config) {}, true},
		{"1.1 client", "1.2", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }, false},
		{"CBC only", "1.2", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		}, false},
		{"h2 and http/1.1 offered", "1.2", func(c *tls.Config) { c.NextProtos = []string{"h2", "http/1.1"} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := &Config{Listen: ":0", Certs: []CertFile{pair}, MinVersion: tt.min}
			hs := NewHandshaker(cfg, loadCerts(t, cfg).ServerConfig())
			srv := startEcho(t, hs)
			client := clientFor("site.test")
			tt.client(client)
			c, err := dial(t, srv.addr(), client)
			if !tt.ok {
				if err == nil {
					t.Fatalf("handshake succeeded with %s", tls.VersionName(c.ConnectionState().Version))
				}
				if serr := <-srv.errs; serr == nil {
					t.Fatal("server reported no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(client.NextProtos) > 0 && c.ConnectionState().NegotiatedProtocol != "http/1.1" {
				t.Errorf("ALPN = %q", c.ConnectionState().NegotiatedProtocol)
			}
			exchange(t, c, "ok")
		})
	}
}

// TestNetConn: the returned conn leads back to the raw socket.
func TestNetConn(t *testing.T) {
	t.Parallel()
	tlsCfg := pipeServerConfig(t)
	synctest.Test(t, func(t *testing.T) {
		hs := NewHandshaker(&Config{}, tlsCfg)
		srv, cli := net.Pipe()
		go clientHandshake(cli)
		conn, err := hs.Handshake(context.Background(), srv)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		nc, ok := conn.NetConn().(interface{ NetConn() net.Conn })
		if !ok || nc.NetConn() != srv {
			t.Fatal("NetConn().NetConn() is not the raw conn")
		}
	})
}
