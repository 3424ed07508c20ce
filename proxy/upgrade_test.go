package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
)

// anySwitchNode answers every request with answer (a 101 of any kind),
// then records what else arrives on the connection into got, until the
// connection ends.
func anySwitchNode(t *testing.T, answer func(key string) string) (addr string, got chan string) {
	got = make(chan string, 16)
	addr = serveConns(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.WriteString(c, answer(req.Header.Get("Sec-WebSocket-Key")))
		rest, _ := io.ReadAll(br)
		got <- string(rest)
	})
	return addr, got
}

// TestUpgradeNeedsTheAccept: a node's 101 becomes a tunnel only when it
// answers the client's key; otherwise the client gets 502, its connection
// closes, and nothing it sent after its head reaches the node.
func TestUpgradeNeedsTheAccept(t *testing.T) {
	const tunnel = "bytes meant for the tunnel"
	for _, c := range []struct {
		name   string
		answer func(key string) string
		status string
	}{
		{"right accept", wiretest.Switched, "101"},
		{"no accept", func(string) string {
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
		}, "502"},
		{"wrong accept", func(string) string { return wiretest.Switched("AAAAAAAAAAAAAAAAAAAAAA==") }, "502"},
		{"two accepts", func(key string) string {
			return strings.Replace(wiretest.Switched(key), "\r\n\r\n", "\r\nSec-WebSocket-Accept: "+wiretest.Accept+"\r\n\r\n", 1)
		}, "502"},
		{"accept without Upgrade", func(key string) string {
			return strings.Replace(wiretest.Switched(key), "Upgrade: websocket\r\n", "", 1)
		}, "502"},
		{"another protocol", func(key string) string {
			return strings.Replace(wiretest.Switched(key), "Upgrade: websocket", "Upgrade: h2c", 1)
		}, "502"},
	} {
		t.Run(c.name, func(t *testing.T) {
			node, got := anySwitchNode(t, c.answer)
			_, addr := startServer(t, oneNode(node), false)
			cc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			cc.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(cc, wiretest.Handshake("/ws")+tunnel)
			br := bufio.NewReader(cc)
			line, err := br.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "HTTP/1.1 "+c.status+" ") {
				t.Fatalf("answer %q %v, want %s", line, err, c.status)
			}
			if c.status == "101" {
				cc.(*net.TCPConn).CloseWrite()
				if rest := <-got; rest != tunnel {
					t.Fatalf("the node got %q through the tunnel, want %q", rest, tunnel)
				}
				return
			}
			if rest, err := io.ReadAll(br); err != nil || !strings.Contains(string(rest), "\r\nConnection: close\r\n") {
				t.Fatalf("after the 502: %q %v, want the rest of it and the end", rest, err)
			}
			select {
			case rest := <-got:
				if rest != "" {
					t.Fatalf("the node got %q after its bad 101", rest)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the node connection stays open after a bad 101")
			}
		})
	}
}

// TestUpgradeRequestChecked: a request asking for a WebSocket that is not a
// complete handshake gets 400 and reaches no node; one naming another
// protocol is forwarded as a plain request, without Upgrade.
func TestUpgradeRequestChecked(t *testing.T) {
	heads := make(chan http.Header, 16)
	node := serveConns(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		heads <- req.Header
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	_, addr := startServer(t, oneNode(node), false)
	hs := wiretest.Handshake("/ws")
	for _, c := range []struct {
		name, head, status string
	}{
		{"bad key", strings.Replace(hs, wiretest.Key, "not base64 at all!!!!!==", 1), "400"},
		{"key of 15 bytes", strings.Replace(hs, wiretest.Key, "AAAAAAAAAAAAAAAAAAAA", 1), "400"},
		{"no key", strings.Replace(hs, "Sec-WebSocket-Key: "+wiretest.Key+"\r\n", "", 1), "400"},
		{"version 8", strings.Replace(hs, "Version: 13", "Version: 8", 1), "400"},
		{"no version", strings.Replace(hs, "Sec-WebSocket-Version: 13\r\n", "", 1), "400"},
		{"POST", strings.Replace(hs, "GET", "POST", 1), "400"},
		{"HTTP/1.0", strings.Replace(hs, "HTTP/1.1", "HTTP/1.0", 1), "400"},
		{"h2c", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n", "200"},
		{"websocket not in Connection", strings.Replace(hs, "Connection: Upgrade", "Connection: keep-alive", 1), "200"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			cc.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(cc, c.head)
			resp, err := http.ReadResponse(bufio.NewReader(cc), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Status[:3]; got != c.status {
				t.Fatalf("status %s, want %s", resp.Status, c.status)
			}
			if c.status != "200" {
				return
			}
			h := <-heads
			if v := h.Get("Upgrade"); v != "" {
				t.Errorf("the node got Upgrade: %s", v)
			}
			if v := h.Get("Connection"); v != "" {
				t.Errorf("the node got Connection: %s", v)
			}
			if v := h.Get("HTTP2-Settings"); v != "" {
				t.Errorf("the node got HTTP2-Settings: %s", v)
			}
		})
	}
	select {
	case h := <-heads:
		t.Fatalf("a refused handshake reached the node: %v", h)
	default:
	}
}
