package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// nodeRecord is one request as a node received it: its head and its body,
// both raw (a chunked body with its chunk framing).
type nodeRecord struct{ head, body string }

// startRecordingNode runs a node that reads each request (the head, then
// the body by its framing) and answers it 200 "ok"; each request it read
// goes to the channel.
func startRecordingNode(t *testing.T) (string, <-chan nodeRecord) {
	got := make(chan nodeRecord, 64)
	addr := serveConns(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			rec, err := readRecord(br)
			if err != nil {
				return
			}
			select {
			case got <- rec:
			default:
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	return addr, got
}

// readRecord reads one request from br as it came: the head through its
// empty line, then a Content-Length or chunked body.
func readRecord(br *bufio.Reader) (nodeRecord, error) {
	var head, body strings.Builder
	length, chunked := int64(0), false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nodeRecord{}, err
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch strings.ToLower(k) {
		case "content-length":
			length, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		case "transfer-encoding":
			chunked = true
		}
	}
	if !chunked {
		if _, err := io.CopyN(&body, br, length); err != nil {
			return nodeRecord{}, err
		}
		return nodeRecord{head.String(), body.String()}, nil
	}
	for inTrailer := false; ; {
		line, err := br.ReadString('\n')
		if err != nil {
			return nodeRecord{}, err
		}
		body.WriteString(line)
		switch {
		case inTrailer && line == "\r\n":
			return nodeRecord{head.String(), body.String()}, nil
		case inTrailer:
			continue
		}
		size, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
		if err != nil {
			return nodeRecord{}, err
		}
		if size == 0 {
			inTrailer = true
			continue
		}
		if _, err := io.CopyN(&body, br, size+2); err != nil {
			return nodeRecord{}, err
		}
	}
}

// viaTether sends raw to tether at addr on a new connection (TLS with
// tlsOn) and reads the answers until the final one; it returns what the node
// received and whether the client got a 100 Continue first.
func viaTether(t *testing.T, addr string, tlsOn bool, raw string, node <-chan nodeRecord) (rec nodeRecord, continued bool) {
	t.Helper()
	var c net.Conn
	var err error
	d := &net.Dialer{Timeout: 5 * time.Second}
	if tlsOn {
		c, err = tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 100 {
			continued = true
			continue
		}
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		break
	}
	select {
	case rec = <-node:
	case <-time.After(5 * time.Second):
		t.Fatal("the node got no request")
	}
	return rec, continued
}

// TestRequestHeadAsBefore compares the whole head a node receives, byte for
// byte, with what tether sent for it when it rewrote heads with fasthttp's
// Set and Del alone (recorded from that code): heads with and without
// hop-by-hop fields, with Connection-listed fields, without Host, with
// bodies, and an upgrade.
func TestRequestHeadAsBefore(t *testing.T) {
	t.Parallel()
	nodeAddr, node := startRecordingNode(t)
	_, addr := startServer(t, oneNode(nodeAddr), false)
	for _, tc := range []struct{ name, req, want string }{
		{"browser", browserRequest, "GET /cobrowse/app.js?v=3 HTTP/1.1\r\nHost: cobrowse.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nReferer: https://cobrowse.example.com/cobrowse/session\r\nCookie: _ga=GA1.2.1234567890.1234567890; gcbSessionServer=CB_Server_1; theme=dark\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: cobrowse.example.com\r\nX-Real-Ip: 127.0.0.1\r\n\r\n"},
		{"curl", "GET /a HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n", "GET /a HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: localhost:8080\r\nX-Real-Ip: 127.0.0.1\r\n\r\n"},
		{"every hop-by-hop field", "GET /h?x=1 HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Opt\r\nKeep-Alive: timeout=5\r\nX-Opt: 1\r\nProxy-Connection: keep-alive\r\nA: 1\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\nProxy-Authenticate: Basic\r\nTE: trailers\r\nB: 2\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\nC: 3\r\n\r\n", "GET /h?x=1 HTTP/1.1\r\nHost: a.test\r\nA: 1\r\nC: 3\r\nB: 2\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a.test\r\nX-Real-Ip: 127.0.0.1\r\n\r\n"},
		{"browser keep-alive", "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive\r\nUser-Agent: ua\r\nAccept: */*\r\nCookie: gcbSessionServer=CB_Server_1\r\n\r\n", "GET / HTTP/1.1\r\nHost: a.test\r\nCookie: gcbSessionServer=CB_Server_1\r\nUser-Agent: ua\r\nAccept: */*\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a.test\r\nX-Real-Ip: 127.0.0.1\r\n\r\n"},
		{"Connection lists fields", "GET / HTTP/1.1\r\nHost: a.test\r\nX-A: 1\r\nConnection: X-A, x-b\r\nX-B: 2\r\nX-C: 3\r\nConnection: X-C\r\n\r\n", "GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a.test\r\nX-Real-Ip: 127.0.0.1\r\n\r\n"},
		{"HTTP/1.0 without Host", "GET /old HTTP/1.0\r\nUser-Agent: old\r\n\r\n", "GET /old HTTP/1.0\r\nUser-Agent: old\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Real-Ip: 127.0.0.1\r\n\r\n"},
		{"HTTP/1.0 keep-alive", "GET /old HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n", "GET /old HTTP/1.0\r\nHost: a.test\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a.test\r\nX-Real-Ip: 127.0.0.1\r\n\r\n"},
		{"absolute form", "GET http://b.test:81/abs?q HTTP/1.1\r\nHost: a.test\r\nX: y\r\n\r\n", "GET /abs?q HTTP/1.1\r\nHost: b.test:81\r\nX: y\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: b.test:81\r\nX-Real-Ip: 127.0.0.1\r\n\r\n"},
		{"Content-Length body", "POST /p HTTP/1.1\r\nHost: a.test\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", "POST /p HTTP/1.1\r\nHost: a.test\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a.test\r\nX-Real-Ip: 127.0.0.1\r\n\r\n"},
		{"chunked body", "POST /p HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n", "POST /p HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a.test\r\nX-Real-Ip: 127.0.0.1\r\n\r\n"},
		{"Expect", "PUT /p HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", "PUT /p HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a.test\r\nX-Real-Ip: 127.0.0.1\r\n\r\n"},
		{"Connection lists Host and X-Forwarded-For", "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: host, x-forwarded-for\r\nX-Forwarded-For: 1.1.1.1\r\nA: 1\r\n\r\n", "GET / HTTP/1.1\r\nA: 1\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Real-Ip: 127.0.0.1\r\n\r\n"},
		{"upgrade", "GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://a.test\r\n\r\n", "GET /ws HTTP/1.1\r\nHost: a.test\r\nOrigin: http://a.test\r\nSec-Websocket-Version: 13\r\nSec-Websocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a.test\r\nX-Real-Ip: 127.0.0.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, _ := viaTether(t, addr, false, tc.req, node)
			if rec.head != tc.want {
				t.Errorf("head at the node:\n%q\nwant\n%q", rec.head, tc.want)
			}
		})
	}
}

// browserRequest is a browser's GET with the sticky cookie.
const browserRequest = "GET /cobrowse/app.js?v=3 HTTP/1.1\r\n" +
	"Host: cobrowse.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: */*\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Referer: https://cobrowse.example.com/cobrowse/session\r\n" +
	"Cookie: _ga=GA1.2.1234567890.1234567890; gcbSessionServer=CB_Server_1; theme=dark\r\n" +
	"\r\n"
