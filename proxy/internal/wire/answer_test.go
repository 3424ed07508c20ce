package wire

import (
	"bufio"
	"io"
	"strings"
	"testing"

	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
)

// TestAnswerRelay checks the head Relay writes for the client: hop-by-hop
// fields out, chunked framing normalized, the reason phrase, the added
// Connection field, interim answers and a WebSocket 101; and that the
// reader is left at the body.
func TestAnswerRelay(t *testing.T) {
	t.Parallel()
	const body = "BODY"
	for _, c := range []struct {
		name string
		raw  string
		head bool // response to a HEAD request
		conn ConnField
		want string
	}{
		{
			name: "fields as sent",
			raw:  "HTTP/1.1 200 OK\r\nserver: n\r\nContent-Length: 4\r\nX-Node:CB_1\r\nSet-Cookie: a=b; Path=/ \r\nSet-Cookie: c=d\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nserver: n\r\nContent-Length: 4\r\nX-Node:CB_1\r\nSet-Cookie: a=b; Path=/ \r\nSet-Cookie: c=d\r\n\r\n",
		},
		{
			name: "hop-by-hop fields",
			raw: "HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: keep-alive, x-a\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n" +
				"Upgrade: h2c\r\nTE: trailers\r\nX-Keep: 2\r\nconnection: X-B , close,,\r\nx-b: 3\r\nX-A: 4\r\nX-AB: 5\r\nContent-Length: 4\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nX-Keep: 2\r\nX-AB: 5\r\nContent-Length: 4\r\n\r\n",
		},
		{
			name: "Connection names a framing field",
			raw:  "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\nX: 1\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: 1\r\n\r\n",
		},
		{
			name: "Connection names Content-Length",
			raw:  "HTTP/1.1 200 OK\r\nConnection: content-length, X-A\r\nContent-Length: 4\r\nX-A: 1\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n",
		},
		{
			name: "many Connection names",
			raw: "HTTP/1.1 200 OK\r\nX-A: 1\r\nx-l: 2\r\nX-M: 3\r\nConnection: X-L, x-c, X-J, x-a, X-K, x-b, X-I, x-d, X-H, x-e, X-G, x-f\r\n" +
				"X-B: 4\r\nX-C: 5\r\nX-AA: 6\r\nX-D: 7\r\nX-E: 8\r\nX-F: 9\r\nX-G: 10\r\nX-H: 11\r\nX-I: 12\r\nX-J: 13\r\nX-K: 14\r\nX: 15\r\nContent-Length: 4\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nX-M: 3\r\nX-AA: 6\r\nX: 15\r\nContent-Length: 4\r\n\r\n",
		},
		{
			name: "chunked",
			raw:  "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nX: 1\r\ntransfer-encoding:  Chunked \r\nY: 2\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nX: 1\r\nTransfer-Encoding: chunked\r\nY: 2\r\n\r\n",
		},
		{
			name: "chunked to HEAD",
			raw:  "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
			head: true,
			want: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
		},
		{
			name: "repeated Content-Length",
			raw:  "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX: 1\r\ncontent-length: 4\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX: 1\r\n\r\n",
		},
		{
			name: "no reason",
			raw:  "HTTP/1.1 404\r\nContent-Length: 4\r\n\r\n",
			want: "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\n",
		},
		{
			name: "empty reason",
			raw:  "HTTP/1.1 200 \r\nContent-Length: 4\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n",
		},
		{
			name: "own reason",
			raw:  "HTTP/1.1 200 Fine, thanks\r\nContent-Length: 4\r\n\r\n",
			want: "HTTP/1.1 200 Fine, thanks\r\nContent-Length: 4\r\n\r\n",
		},
		{
			name: "unknown code",
			raw:  "HTTP/1.1 299\r\nContent-Length: 4\r\n\r\n",
			want: "HTTP/1.1 299 Unknown Status Code\r\nContent-Length: 4\r\n\r\n",
		},
		{
			name: "HTTP/1.0, close",
			raw:  "HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\n",
			conn: ConnClose,
			want: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\n",
		},
		{
			name: "node closes, client kept over HTTP/1.0",
			raw:  "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 4\r\n\r\n",
			conn: ConnKeepAlive,
			want: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: keep-alive\r\n\r\n",
		},
		{
			name: "no fields, close",
			raw:  "HTTP/1.1 204 No Content\r\n\r\n",
			conn: ConnClose,
			want: "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
		},
		{
			name: "103",
			raw:  "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nConnection: keep-alive\r\nLink: </b.js>\r\n\r\n",
			want: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nLink: </b.js>\r\n\r\n",
		},
		{
			name: "101 WebSocket",
			raw:  wiretest.Switched(wiretest.Key),
			want: wiretest.Switched(wiretest.Key),
		},
		{
			name: "101 keeps every field",
			raw:  "HTTP/1.1 101\r\nconnection: Upgrade, X-A\r\nX-A: 1\r\nupgrade: websocket\r\nKeep-Alive: 5\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
			want: "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade, X-A\r\nX-A: 1\r\nupgrade: websocket\r\nKeep-Alive: 5\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			br := bufio.NewReaderSize(strings.NewReader(c.raw+body), testMaxHead)
			var a AnswerHead
			if _, err := ReadResponseHead(br, &a, testMaxHead, c.head); err != nil {
				t.Fatal(err)
			}
			if got := string(a.Relay([]byte("<"), br, c.conn)); got != "<"+c.want {
				t.Errorf("relayed\n%q\nwant\n%q", got[1:], c.want)
			}
			if rest, _ := io.ReadAll(br); string(rest) != body {
				t.Errorf("left %q in the reader, want the body", rest)
			}
		})
	}
}

// TestAnswerReuse reads several answers into one AnswerHead: nothing of a
// head carries over to the next.
func TestAnswerReuse(t *testing.T) {
	t.Parallel()
	heads := []struct{ raw, want string }{
		{"HTTP/1.1 200 OK\r\nConnection: X-A\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\nUpgrade: websocket\r\n\r\n0\r\n\r\n",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"HTTP/1.1 100 Continue\r\n\r\n", ""},
		{"HTTP/1.1 200 OK\r\nX-A: 2\r\nContent-Length: 0\r\n\r\n",
			"HTTP/1.1 200 OK\r\nX-A: 2\r\nContent-Length: 0\r\n\r\n"},
	}
	var all string
	for _, h := range heads {
		all += h.raw
	}
	br := bufio.NewReaderSize(strings.NewReader(all), testMaxHead)
	var a AnswerHead
	buf := make([]byte, 64)
	for i, h := range heads {
		fr, err := ReadResponseHead(br, &a, testMaxHead, false)
		if err != nil {
			t.Fatalf("head %d: %v", i, err)
		}
		if a.Status() == 100 {
			a.Skip(br)
			continue
		}
		if got := string(a.Relay(nil, br, ConnNone)); got != h.want {
			t.Fatalf("head %d relayed %q, want %q", i, got, h.want)
		}
		if a.UpgradeWebSocket() != (i == 0) {
			t.Fatalf("head %d: UpgradeWebSocket %v", i, a.UpgradeWebSocket())
		}
		if _, err := CopyBody(bufio.NewWriter(io.Discard), br, fr, buf, false); err != nil {
			t.Fatalf("head %d body: %v", i, err)
		}
	}
	if br.Buffered() != 0 {
		t.Fatalf("%d bytes left", br.Buffered())
	}
}

// TestAnswerWebSocket checks what checkSwitch reads of a 101: Upgrade lists
// websocket, and exactly one Sec-WebSocket-Accept of the right length.
func TestAnswerWebSocket(t *testing.T) {
	t.Parallel()
	const accept = wiretest.Accept
	for _, c := range []struct {
		name     string
		fields   string
		upgrade  bool
		acceptOK bool
	}{
		{"handshake", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n", true, true},
		{"list and spaces", "upgrade: h2c, WebSocket\r\nsec-websocket-accept:  " + accept + " \r\n", true, true},
		{"no Upgrade", "Sec-WebSocket-Accept: " + accept + "\r\n", false, true},
		{"other protocol", "Upgrade: h2c\r\nSec-WebSocket-Accept: " + accept + "\r\n", false, true},
		{"two accepts", "Upgrade: websocket\r\nSec-WebSocket-Accept: " + accept + "\r\nSec-WebSocket-Accept: " + accept + "\r\n", true, false},
		{"accept too long", "Upgrade: websocket\r\nSec-WebSocket-Accept: " + accept + "x\r\n", true, false},
		{"no accept", "Upgrade: websocket\r\n", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			br := bufio.NewReaderSize(strings.NewReader("HTTP/1.1 101 Switching Protocols\r\n"+c.fields+"\r\n"), testMaxHead)
			var a AnswerHead
			if _, err := ReadResponseHead(br, &a, testMaxHead, false); err != nil {
				t.Fatal(err)
			}
			got, ok := a.WebSocketAccept()
			if a.UpgradeWebSocket() != c.upgrade || ok != c.acceptOK || ok && string(got) != accept {
				t.Fatalf("upgrade %v, accept %q %v; want %v, %v", a.UpgradeWebSocket(), got, ok, c.upgrade, c.acceptOK)
			}
		})
	}
}

// TestAnswerKeeps bounds what a pooled AnswerHead keeps after a head with
// many lines to cut.
func TestAnswerKeeps(t *testing.T) {
	t.Parallel()
	raw := "HTTP/1.1 200 OK\r\nConnection: " + strings.Repeat("x,", 2*maxKept) + "y\r\n" +
		strings.Repeat("TE: a\r\n", 2*maxKept) + "Content-Length: 0\r\n\r\n"
	var a AnswerHead
	if _, err := ReadResponseHead(bufio.NewReaderSize(strings.NewReader(raw), testMaxHead), &a, testMaxHead, false); err != nil {
		t.Fatal(err)
	}
	if len(a.cuts) <= maxKept || len(a.listed) <= maxKept {
		t.Fatalf("%d cuts, %d names: the test needs more than %d", len(a.cuts), len(a.listed), maxKept)
	}
	small := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	if _, err := ReadResponseHead(bufio.NewReaderSize(strings.NewReader(small), testMaxHead), &a, testMaxHead, false); err != nil {
		t.Fatal(err)
	}
	if cap(a.cuts) > maxKept || cap(a.listed) > maxKept {
		t.Fatalf("kept %d cuts and %d names of capacity", cap(a.cuts), cap(a.listed))
	}
}
