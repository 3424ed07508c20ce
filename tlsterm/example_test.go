package tlsterm_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/tlsterm"
	"github.com/tether-lb/tether/tlsterm/tlstest"
)

// Serving TLS as proxy does: load the certificates once, then hand each
// accepted conn to the Handshaker in the conn's own goroutine.
func Example() {
	dir, _ := os.MkdirTemp("", "tlsterm-example")
	defer os.RemoveAll(dir)
	cert, key, _ := tlstest.WritePair(dir, tlstest.Leaf{Names: []string{"site.test"}})

	cfg := tlsterm.Config{Listen: "127.0.0.1:0", Certs: []tlsterm.CertFile{{Cert: cert, Key: key}}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		fmt.Println(err) // exit 2
		return
	}
	certs, err := tlsterm.LoadCerts(&cfg, zerolog.Nop())
	if err != nil {
		fmt.Println(err) // a *tlsterm.FileError: exit 2
		return
	}
	defer certs.Close()
	hs := tlsterm.NewHandshaker(&cfg, certs.ServerConfig())

	ln, _ := net.Listen("tcp", cfg.Listen)
	defer ln.Close()
	go func() {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "site.test", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err == nil {
			c.Close()
		}
	}()

	raw, _ := ln.Accept()
	defer raw.Close()
	conn, err := hs.Handshake(context.Background(), raw) // in the conn's goroutine
	if err != nil {
		fmt.Println(err)
		return
	}
	st := conn.ConnectionState()
	fmt.Println(st.ServerName, st.NegotiatedProtocol, tls.VersionName(st.Version))
	// Output: site.test http/1.1 TLS 1.3
}

// Bridging: pool clones the client config per https node and sets the node's
// host name.
func ExampleClientConfig() {
	cfg := tlsterm.Config{BackendCA: ""} // "": the system roots
	tc, err := tlsterm.ClientConfig(&cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	node := tc.Clone()
	node.ServerName = "node1.internal"
	fmt.Println(node.ServerName, node.NextProtos, node.InsecureSkipVerify)
	// Output: node1.internal [http/1.1] false
}
