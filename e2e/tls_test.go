package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/tether-lb/tether/tlsterm/tlstest"
)

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// tlsGet sends one request over a new TLS connection (SNI = name) and
// returns the answer and the certificate the server presented.
func tlsGet(t *testing.T, addr, name, req string) (*response, *x509.Certificate) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("tls dial %s (%s): %v", addr, name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	r, err := parseResponse(bufio.NewReader(c), strings.HasPrefix(req, "HEAD "))
	if err != nil {
		t.Fatal(err)
	}
	return r, c.ConnectionState().PeerCertificates[0]
}

// certCN reads the Common Name of a PEM certificate file.
func certCN(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.Subject.CommonName
}

func TestTLSStickyHTTPSAndWSS(t *testing.T) {
	dir := t.TempDir()
	crt, key, err := tlstest.WritePair(dir, tlstest.Leaf{})
	if err != nil {
		t.Fatal(err)
	}
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tlsAddr := freeAddr(t)
	tt := startTether(t, []*testNode{n1, n2}, append(healthOff, "--tls-listen", tlsAddr, "--cert", crt, "--key", key)...)

	for _, want := range []string{node1, node2, node2, node1} {
		r, _ := tlsGet(t, tlsAddr, "localhost", get("/cobrowse/echo-headers", "Cookie: gcbSessionServer=x."+want+"\r\n"))
		if r.status != 200 || r.get("X-Node") != want {
			t.Fatalf("https sticky to %s: %d from %s", want, r.status, r.get("X-Node"))
		}
		if !strings.Contains(string(r.body), "X-Forwarded-Proto: https") {
			t.Fatalf("node saw no X-Forwarded-Proto: https:\n%s", r.body)
		}
	}
	// wss: sticky, echo, a 1 MB message.
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	h := http.Header{"Cookie": {"gcbSessionServer=" + node2}}
	ws, resp, err := d.Dial("wss://"+tlsAddr+"/cobrowse/ws?session=t&role=echo", h)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer ws.Close()
	if resp.Header.Get("X-Node") != node2 {
		t.Fatalf("wss went to %s, want %s", resp.Header.Get("X-Node"), node2)
	}
	big := strings.Repeat("w", 1<<20)
	for _, m := range []string{"hello", big} {
		ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := ws.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := ws.ReadMessage(); err != nil || string(got) != m {
			t.Fatalf("wss echo of %d bytes: %d bytes, %v", len(m), len(got), err)
		}
	}
	// The plain port still works beside it, and plain HTTP to the TLS port
	// gets a 400 in plain text.
	if r := dialRaw(t, tt.addr).do(t, get("/cobrowse/x", "")); r.status != 200 {
		t.Fatalf("plain port: %d", r.status)
	}
	if r := dialRaw(t, tlsAddr).do(t, get("/cobrowse/x", "")); r.status != 400 {
		t.Fatalf("plain HTTP to the TLS port: %d, want 400", r.status)
	}
	_, body := adminDo(t, "GET", "http://"+tt.adminAddr(t)+"/metrics", "", nil)
	if done := metricValue(body, `tether_tls_handshakes_total{result="done"}`); done < 5 {
		t.Errorf("tls handshakes done = %v, want at least 5", done)
	}
	if plain := metricValue(body, `tether_tls_handshakes_total{result="plain_http"}`); plain != 1 {
		t.Errorf("plain-HTTP handshakes = %v, want 1", plain)
	}
}

func TestTLSSNIAndReload(t *testing.T) {
	dir := t.TempDir()
	defCrt, defKey, _ := tlstest.WritePair(dir, tlstest.Leaf{Names: []string{"default.test"}})
	aCrt, aKey, _ := tlstest.WritePair(dir, tlstest.Leaf{Names: []string{"*.a.test"}})
	n1 := startNode(t, node1, 0)
	tlsAddr := freeAddr(t)
	cfg := filepath.Join(dir, "tether.yaml")
	writeConfig(t, cfg, []*testNode{n1}, "tls-listen: "+tlsAddr+"\ncert: ["+defCrt+", "+aCrt+"]\nkey: ["+defKey+", "+aKey+"]\n")
	tt := startTether(t, nil, append(healthOff, "--config", cfg)...)

	if _, cert := tlsGet(t, tlsAddr, "www.a.test", get("/", "")); cert.Subject.CommonName != "*.a.test" {
		t.Fatalf("SNI www.a.test got %q", cert.Subject.CommonName)
	}
	if _, cert := tlsGet(t, tlsAddr, "other.test", get("/", "")); cert.Subject.CommonName != "default.test" {
		t.Fatalf("SNI other.test got %q, want the default", cert.Subject.CommonName)
	}

	// An open wss session across the reload.
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "default.test"}}
	ws, _, err := d.Dial("wss://"+tlsAddr+"/cobrowse/ws?session=r&role=echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	// New default certificate in place of the old files, then SIGHUP.
	newCrt, newKey, _ := tlstest.WritePair(dir, tlstest.Leaf{Names: []string{"renewed.test"}})
	for src, dst := range map[string]string{newCrt: defCrt, newKey: defKey} {
		data, _ := os.ReadFile(src)
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tt.cmd.Process.Signal(syscall.SIGHUP)
	if !waitFor(3*time.Second, func() bool {
		_, cert := tlsGet(t, tlsAddr, "other.test", get("/", ""))
		return cert.Subject.CommonName == certCN(t, newCrt)
	}) {
		t.Fatalf("the reload did not change the served certificate:\n%s", tail(tt.stderr.String(), 2000))
	}
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if _, m, err := ws.ReadMessage(); err != nil || string(m) != "after" {
		t.Fatalf("wss across the reload: %q %v", m, err)
	}
}

// startTLSNode serves a fake node over TLS with a certificate signed by ca.
func startTLSNode(t *testing.T, name string, ca *tlstest.CA) *testNode {
	t.Helper()
	dir := t.TempDir()
	crt, key, err := ca.WritePair(dir, tlstest.Leaf{Names: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	return startNodeOn(t, name, ln)
}

func TestTLSBridgingToNodes(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlstest.NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := startTLSNode(t, node1, ca)
	url := "https://" + n.addr
	ok := startTether(t, nil, "--node", node1+"="+url, "--backend-ca", ca.CertFile)
	c := dialRaw(t, ok.addr)
	for range 5 {
		if r := c.do(t, get("/cobrowse/x", "")); r.status != 200 || r.get("X-Node") != node1 {
			t.Fatalf("through the verified https node: %d from %s", r.status, r.get("X-Node"))
		}
	}
	// Without the CA the node's certificate is refused: no answer from it.
	bad := startTether(t, nil, "--node", node1+"="+url)
	r := dialRaw(t, bad.addr).do(t, get("/cobrowse/x", ""))
	if r.status == 200 {
		t.Fatal("an unverified https node was used")
	}
	if !waitFor(2*time.Second, func() bool { return strings.Contains(bad.stderr.String(), "certificate") }) {
		t.Fatalf("no certificate error logged:\n%s", tail(bad.stderr.String(), 2000))
	}
}

func TestTLSBadCertificateFilesExit2(t *testing.T) {
	dir := t.TempDir()
	crt, key, _ := tlstest.WritePair(dir, tlstest.Leaf{})
	expCrt, expKey, _ := tlstest.WritePair(dir, tlstest.Leaf{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	for name, args := range map[string][]string{
		"missing file":   {"--cert", filepath.Join(dir, "nope.crt"), "--key", key},
		"key of another": {"--cert", crt, "--key", expKey},
		"expired":        {"--cert", expCrt, "--key", expKey},
		"unpaired":       {"--cert", crt},
	} {
		cmd := exec.Command(tetherBin, append([]string{"--listen", "", "--admin", "", "--tls-listen", freeAddr(t), "--node", "a=http://127.0.0.1:1"}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%s: exit %v, want 2", name, err)
			continue
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], "--cert") && !strings.Contains(lines[0], "--key") {
			t.Errorf("%s: stderr %q, want one line naming the flag and file", name, stderr.String())
		}
	}
}

// TestTLSClientsToldWhenNodeDies: wss clients of a node that goes down are
// told 1012 like plain ones, and their sticky https requests fail over.
func TestTLSClientsToldWhenNodeDies(t *testing.T) {
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tlsAddr := freeAddr(t)
	startTether(t, []*testNode{n1, n2}, "--tls-listen", tlsAddr, "--tls-self-signed")
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	var sessions []*websocket.Conn
	for range 5 {
		ws, resp, err := d.Dial("wss://"+tlsAddr+"/cobrowse/ws?session=tls&role=echo", http.Header{"Cookie": {"gcbSessionServer=" + node1}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if resp.Header.Get("X-Node") != node1 {
			t.Fatalf("wss went to %s", resp.Header.Get("X-Node"))
		}
		sessions = append(sessions, ws)
	}
	off := time.Now()
	n1.SetHealthy(false)
	codes, at := awaitClose(t, sessions, 5*time.Second)
	for i, c := range codes {
		if c != 1012 {
			t.Fatalf("wss session %d closed with %d, want 1012", i, c)
		}
		if d := at[i].Sub(off); d > 2*time.Second {
			t.Fatalf("wss session %d told after %v", i, d)
		}
	}
	r, _ := tlsGet(t, tlsAddr, "localhost", get("/cobrowse/x", "Cookie: gcbSessionServer="+node1+"\r\n"))
	if r.get("X-Node") != node2 || r.status != 409 {
		t.Fatalf("sticky https request for the down node: %d from %s", r.status, r.get("X-Node"))
	}
}
