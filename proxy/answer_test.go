package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestAnswerHeadRelay: the node's answer head reaches the client as the
// node sent it less its hop-by-hop fields, and a Connection value naming
// Content-Length leaves the framing alone, so the kept client connection
// reads the next answer where it starts.
func TestAnswerHeadRelay(t *testing.T) {
	const answer = "HTTP/1.1 200\r\nx-node: CB_Server_1\r\nConnection: keep-alive, Content-Length, X-Trace\r\n" +
		"Keep-Alive: timeout=5\r\nX-Trace: abc\r\nContent-Length: 2\r\nset-cookie: a=b\r\n\r\nok"
	const want = "HTTP/1.1 200 OK\r\nx-node: CB_Server_1\r\nContent-Length: 2\r\nset-cookie: a=b\r\n\r\n"
	node := startRawNode(t, answer)
	addr := startBenchProxy(t, node.ln.Addr().String())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := range 2 {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		head, err := br.Peek(len(want))
		if err != nil || string(head) != want {
			t.Fatalf("answer %d: head %q %v, want %q", i, head, err, want)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || string(body) != "ok" || resp.Close {
			t.Fatalf("answer %d: body %q %v, close %v", i, body, err, resp.Close)
		}
	}
}

// TestAnswerInterimRelay: a 103 reaches the client before the final answer,
// relayed as the final one is (its hop-by-hop fields out), and the node's
// 100 Continue does not (tether answers Expect itself).
func TestAnswerInterimRelay(t *testing.T) {
	const answer = "HTTP/1.1 100 Continue\r\n\r\n" +
		"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nConnection: keep-alive\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	const want = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	node := startRawNode(t, answer)
	addr := startBenchProxy(t, node.ln.Addr().String())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("client got %q %v, want %q", got, err, want)
	}
}
