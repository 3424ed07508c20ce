package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"slices"
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

// TestRequestHeadFields checks the fields a node receives for client heads
// carrying, or not, each hop-by-hop field and the forwarding fields tether
// sets: want gives the exact values (in order) of the fields it names, nil
// for a field that must not reach the node. Every field not named must
// reach the node as sent.
func TestRequestHeadFields(t *testing.T) {
	t.Parallel()
	nodeAddr, node := startRecordingNode(t)
	_, addr := startServer(t, oneNode(nodeAddr), false)
	_, tlsAddr := startServer(t, oneNode(nodeAddr), true)
	fwd := func(host string) map[string][]string {
		m := map[string][]string{
			"x-forwarded-for":   {"127.0.0.1"},
			"x-forwarded-proto": {"http"},
			"x-forwarded-host":  {host},
			"x-real-ip":         {"127.0.0.1"},
		}
		if host == "" {
			m["x-forwarded-host"] = nil
		}
		return m
	}
	with := func(m map[string][]string, kv ...any) map[string][]string {
		for i := 0; i < len(kv); i += 2 {
			v, _ := kv[i+1].([]string)
			m[kv[i].(string)] = v
		}
		return m
	}
	head := func(fields string) string {
		return "GET /f HTTP/1.1\r\nHost: a.test\r\nX-Before: 1\r\n" + fields + "X-After: 2\r\n\r\n"
	}
	for _, tc := range []struct {
		name      string
		tls       bool
		req       string
		want      map[string][]string
		body      string
		continued bool // the client gets a 100 Continue
		reordered bool // the deletion of hop-by-hop fields may move the last field up (fasthttp's DelBytes)
	}{
		{name: "no field of note", req: head(""), want: fwd("a.test")},
		{name: "Connection", req: head("Connection: keep-alive\r\n"), want: with(fwd("a.test"), "connection", nil)},
		{name: "Connection close", req: head("Connection: close\r\n"), want: with(fwd("a.test"), "connection", nil)},
		{name: "Keep-Alive", req: head("Keep-Alive: timeout=5\r\n"), want: with(fwd("a.test"), "keep-alive", nil)},
		{name: "Proxy-Connection", req: head("Proxy-Connection: keep-alive\r\n"), want: with(fwd("a.test"), "proxy-connection", nil)},
		{name: "Proxy-Authorization", req: head("Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"), want: with(fwd("a.test"), "proxy-authorization", nil)},
		{name: "Proxy-Authenticate", req: head("proxy-authenticate: Basic\r\n"), want: with(fwd("a.test"), "proxy-authenticate", nil)},
		{name: "TE", req: head("TE: trailers\r\n"), want: with(fwd("a.test"), "te", nil)},
		{name: "Trailer", req: head("Trailer: X-Sum\r\n"), want: with(fwd("a.test"), "trailer", nil)},
		{name: "Upgrade not WebSocket", req: head("Connection: Upgrade\r\nUpgrade: h2c\r\n"), want: with(fwd("a.test"), "upgrade", nil, "connection", nil)},
		{name: "Expect", req: "PUT /f HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 2\r\nX-After: 2\r\n\r\nhi",
			want: with(fwd("a.test"), "expect", nil, "content-length", []string{"2"}), body: "hi", continued: true},
		{name: "Expect other", req: head("Expect: x-other\r\n"), want: with(fwd("a.test"), "expect", nil)},
		{name: "Connection lists a field", req: head("Connection: keep-alive, X-Opt\r\nX-Opt: 1\r\nx-opt: 2\r\n"),
			want: with(fwd("a.test"), "connection", nil, "x-opt", nil)},
		{name: "Connection lists X-Real-Ip", req: head("Connection: x-real-ip\r\nX-Real-Ip: 6.6.6.6\r\n"),
			want: with(fwd("a.test"), "connection", nil)},
		{name: "client X-Forwarded-For", req: head("X-Forwarded-For: 203.0.113.7\r\n"),
			want: with(fwd("a.test"), "x-forwarded-for", []string{"203.0.113.7, 127.0.0.1"})},
		{name: "client X-Forwarded-For on two lines", req: head("X-Forwarded-For: 203.0.113.7\r\nX-Mid: m\r\nx-forwarded-for: 198.51.100.1, 192.0.2.9\r\n"),
			want: with(fwd("a.test"), "x-forwarded-for", []string{"203.0.113.7, 198.51.100.1, 192.0.2.9, 127.0.0.1"})},
		{name: "client X-Forwarded-Proto", tls: true, req: head("X-Forwarded-Proto: http\r\n"),
			want: with(fwd("a.test"), "x-forwarded-proto", []string{"https"})},
		{name: "client forwarding fields between repeated fields", req: head("X-Real-Ip: 6.6.6.6\r\nAccept: a\r\nX-Forwarded-Proto: ftp\r\nAccept: b\r\nX-Forwarded-For: 192.0.2.1\r\nAccept: c\r\n"),
			want: with(fwd("a.test"), "x-forwarded-for", []string{"192.0.2.1, 127.0.0.1"})},
		{name: "client X-Real-Ip twice", req: head("X-Real-IP: 6.6.6.6\r\nX-Real-Ip: 7.7.7.7\r\n"), want: fwd("a.test")},
		{name: "client X-Forwarded-Host", req: head("X-Forwarded-Host: evil.example\r\n"), want: fwd("a.test")},
		{name: "HTTP/1.0 without Host", req: "GET /f HTTP/1.0\r\nX-Forwarded-Host: evil.example\r\nX-After: 2\r\n\r\n", want: fwd("")},
		{name: "HTTP/1.0 with an empty Host", req: "GET /f HTTP/1.0\r\nHost:\r\nX-After: 2\r\n\r\n", want: with(fwd(""), "host", []string{""})},
		{name: "absolute form", req: "GET http://b.test/f HTTP/1.1\r\nHost: a.test\r\n\r\n", want: with(fwd("b.test"), "host", []string{"b.test"})},
		{name: "every field of note", req: head("Connection: keep-alive, X-Opt\r\nKeep-Alive: 5\r\nProxy-Connection: close\r\nProxy-Authorization: x\r\n" +
			"Proxy-Authenticate: y\r\nTE: trailers\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\nExpect: z\r\nX-Opt: 1\r\n" +
			"X-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: ftp\r\nX-Forwarded-Host: evil.example\r\nX-Real-Ip: 6.6.6.6\r\n"),
			want: with(fwd("a.test"), "connection", nil, "keep-alive", nil, "proxy-connection", nil, "proxy-authorization", nil,
				"proxy-authenticate", nil, "te", nil, "trailer", nil, "upgrade", nil, "expect", nil, "x-opt", nil,
				"x-forwarded-for", []string{"192.0.2.1, 127.0.0.1"})},
		{name: "tls", tls: true, req: head(""), want: with(fwd("a.test"), "x-forwarded-proto", []string{"https"})},
		{name: "upgrade", req: "GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket, h2c\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n",
			want: with(fwd("a.test"), "connection", []string{"upgrade"}, "upgrade", []string{"websocket"},
				"x-forwarded-for", []string{"192.0.2.1, 127.0.0.1"}), reordered: true},
		{name: "Content-Length body", req: "POST /f HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
			want: with(fwd("a.test"), "content-length", []string{"5"}, "connection", nil), body: "hello"},
		{name: "chunked body", req: "POST /f HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\nTE: trailers\r\n\r\n" +
			"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nX-Sum: 6\r\n\r\n",
			want: with(fwd("a.test"), "transfer-encoding", []string{"chunked"}, "trailer", nil, "te", nil),
			body: "5\r\nhello\r\n1\r\n!\r\n0\r\nX-Sum: 6\r\n\r\n"}, // chunk extensions dropped
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := addr
			if tc.tls {
				a = tlsAddr
			}
			rec, continued := viaTether(t, a, tc.tls, tc.req, node)
			_, sent := headFields(tc.req)
			line, got := headFields(rec.head)
			if want, _, _ := strings.Cut(tc.req, "\r\n"); line != want && !strings.Contains(want, "://") {
				t.Errorf("request line at the node %q, want %q", line, want)
			}
			for k, want := range tc.want {
				if g := values(got, k); !slices.Equal(g, want) {
					t.Errorf("%s at the node: %q, want %q", k, g, want)
				}
			}
			// The fields not named reach the node as sent.
			for _, kv := range sent {
				if _, named := tc.want[kv[0]]; named {
					continue
				}
				if g, w := values(got, kv[0]), values(sent, kv[0]); !slices.Equal(g, w) {
					t.Errorf("%s at the node: %q, sent %q", kv[0], g, w)
				}
			}
			for _, kv := range got {
				if _, named := tc.want[kv[0]]; !named && values(sent, kv[0]) == nil {
					t.Errorf("%s: %q reached the node, not sent", kv[0], kv[1])
				}
			}
			// and in the order sent.
			if g, w := unnamed(got, tc.want), unnamed(sent, tc.want); !tc.reordered && !slices.Equal(g, w) {
				t.Errorf("fields at the node %q, sent %q", g, w)
			}
			if rec.body != tc.body {
				t.Errorf("body at the node %q, want %q", rec.body, tc.body)
			}
			if continued != tc.continued {
				t.Errorf("100 Continue to the client: %v, want %v", continued, tc.continued)
			}
			if t.Failed() {
				t.Logf("head at the node:\n%s", rec.head)
			}
		})
	}
}

// headFields splits a head into its request line and its fields, names in
// lower case, in order.
func headFields(head string) (line string, fields [][2]string) {
	h, _, _ := strings.Cut(head, "\r\n\r\n")
	lines := strings.Split(h, "\r\n")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		fields = append(fields, [2]string{strings.ToLower(k), strings.TrimSpace(v)})
	}
	return lines[0], fields
}

// unnamed returns the fields not in named, as "name: value", in order.
func unnamed(fields [][2]string, named map[string][]string) []string {
	var kvs []string
	for _, kv := range fields {
		if _, ok := named[kv[0]]; !ok {
			kvs = append(kvs, kv[0]+": "+kv[1])
		}
	}
	return kvs
}

// values returns the values of the fields named k, in order; nil if none.
func values(fields [][2]string, k string) []string {
	var vs []string
	for _, kv := range fields {
		if kv[0] == k {
			vs = append(vs, kv[1])
		}
	}
	return vs
}
