package bench

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
)

// handshakeWorker is one client of the tls-handshake scenario: each
// operation connects, does a full TLS handshake (the client keeps no
// session to resume), GETs / with the sticky cookie on Connection: close,
// reads the answer and closes. Latency runs from the connect to the
// answer's last byte.
type handshakeWorker struct {
	run   *run
	id    int
	stats *workerStats
	br    *bufio.Reader
}

func (w *handshakeWorker) loop() {
	r := w.run
	d := &net.Dialer{Timeout: r.cfg.Timeout}
	w.br = bufio.NewReaderSize(nil, 4<<10)
	p := newPacer(r.cfg.Rate, w.id, r.cfg.Conns)
	for {
		start, ok := r.tick(p)
		if !ok {
			return
		}
		switch fail := w.once(d); fail {
		case "":
			r.record(opHandshake, w.id, w.stats, start, 0)
		case kindSessionEnded:
		default:
			if r.ctx.Err() == nil {
				w.stats.fail(fail)
			}
			r.pause()
		}
	}
}

// once does one connection; it returns the kind of its failure, "" for
// none.
func (w *handshakeWorker) once(d *net.Dialer) string {
	r := w.run
	deadline := r.deadline()
	ctx, cancel := context.WithDeadline(r.ctx, deadline)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", r.tgt.addr)
	if err != nil {
		return errKind("tcp", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	tc := tls.Client(conn, r.tgt.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		return errKind("handshake", err)
	}
	if w.stats.tls == nil {
		w.stats.tls = tlsInfo(tc.ConnectionState())
	}
	head := "GET / HTTP/1.1\r\nHost: " + r.tgt.addr + "\r\nUser-Agent: tether-bench\r\nConnection: close\r\n"
	if c := w.stats.sticky.cookie; c != "" {
		head += "Cookie: " + r.cfg.Cookie + "=" + c + "\r\n"
	}
	if _, err := io.WriteString(tc, head+"\r\n"); err != nil {
		return errKind("handshake_http", err)
	}
	w.br.Reset(tc)
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		return errKind("handshake_http", err)
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	setCookie := ""
	for _, ck := range resp.Cookies() {
		if ck.Name == r.cfg.Cookie {
			setCookie = ck.Value
		}
	}
	w.stats.observe(resp.StatusCode, resp.Header.Get(HeaderNode), setCookie)
	switch {
	case err != nil:
		return errKind("handshake_http", err)
	case resp.StatusCode == http.StatusConflict:
		return kindSessionEnded
	case resp.StatusCode != http.StatusOK:
		return "handshake_status_" + strconv.Itoa(resp.StatusCode)
	}
	_ = tc.Close()
	return ""
}

// tlsInfo describes what a connection negotiated.
func tlsInfo(cs tls.ConnectionState) *TLSInfo {
	info := &TLSInfo{
		Version: tls.VersionName(cs.Version),
		Cipher:  tls.CipherSuiteName(cs.CipherSuite),
		Group:   cs.CurveID.String(),
		KeyType: "?",
		Resumed: cs.DidResume,
	}
	if len(cs.PeerCertificates) > 0 {
		info.KeyType = keyType(cs.PeerCertificates[0].PublicKey)
	}
	return info
}

// keyType names a certificate's public key: "RSA-2048", "ECDSA P-256".
func keyType(pub any) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RSA-" + strconv.Itoa(k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return "?"
}
