package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/tlsterm"
)

// echoNode answers any head with a 101 and then echoes bytes.
func startEchoNode(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if skipHead(br) != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				io.Copy(c, br)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestIdleWSSHoldsNoBuffer: a wss session through tether's TLS listener
// waits for readability on the socket under the TLS connection, so an idle
// one holds no copy buffer.
func TestIdleWSSHoldsNoBuffer(t *testing.T) {
	node := startEchoNode(t)
	cfg := Config{
		TLS:  tlsterm.Config{Listen: "127.0.0.1:0", SelfSigned: true},
		Pool: pool.Config{Nodes: []pool.NodeConfig{{Name: "CB_Server_1", URL: "http://" + node}}},
	}
	s, err := New(cfg, zerolog.Nop(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeTLS(ln)
	defer s.Shutdown(t.Context())

	const sessions = 20
	var conns []*tls.Conn
	for range sessions {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		if !strings.HasPrefix(line, "HTTP/1.1 101") {
			t.Fatalf("upgrade: %q", line)
		}
		if skipHead(br) != nil {
			t.Fatal("101 head")
		}
		// A message bigger than one TLS record, echoed back.
		msg := strings.Repeat("m", 40<<10)
		go io.WriteString(c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echo through wss: %v", err)
		}
		conns = append(conns, c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for spliceBufsOut.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := spliceBufsOut.Load(); n != 0 {
		t.Fatalf("%d copy buffers held by %d idle wss sessions, want 0", n, sessions)
	}
	// And they still work after idling.
	for _, c := range conns {
		io.WriteString(c, "ping")
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
			t.Fatalf("after idle: %q %v", b, err)
		}
	}
}
