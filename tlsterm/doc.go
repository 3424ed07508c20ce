// Package tlsterm is tether's TLS termination: the served certificates (several,
// chosen by SNI, swapped atomically on reload so open connections are
// untouched), handshakes bounded in time and in number, and the client-side
// TLS config for bridging to https nodes.
//
// Stage: proxy accepts a raw conn, hands it to Handshaker.Handshake in the
// connection's own goroutine, and reads HTTP from the *tls.Conn it gets back.
// tlsterm knows nothing of HTTP: a client speaking plain HTTP to the TLS port
// is reported as ErrPlainHTTP and proxy answers it.
//
//	certs, err := tlsterm.LoadCerts(&cfg.TLS, log) // exit 2 on *FileError
//	defer certs.Close()
//	hs := tlsterm.NewHandshaker(&cfg.TLS, certs.ServerConfig())
//	conn, err := hs.Handshake(ctx, raw) // per accepted conn; SIGHUP: certs.Reload(&cfg.TLS)
package tlsterm
