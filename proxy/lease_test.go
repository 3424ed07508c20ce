package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tether-lb/tether/pool"
	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
)

// TestCountsReturnToZero: every node's balancer counts (active, in flight,
// sessions) are back to zero after answered requests, a refused node, a
// node that hangs up, a session the client ends and a session its node's
// failure evicts; a live session counts as one active and one session.
func TestCountsReturnToZero(t *testing.T) {
	good := serveConns(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if key := req.Header.Get("Sec-WebSocket-Key"); key != "" {
				io.WriteString(c, wiretest.Switched(key))
				io.Copy(c, br) // echo until either side ends
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	hangUp := serveConns(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		http.ReadRequest(bufio.NewReader(c))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()

	cfg := Config{Pool: pool.Config{Cooldown: time.Minute, Nodes: []pool.NodeConfig{
		{Name: "CB_Good", URL: "http://" + good},
		{Name: "CB_HangUp", URL: "http://" + hangUp},
		{Name: "CB_Refused", URL: "http://" + refused},
	}}}
	s, addr := startServer(t, cfg, false)
	nodes := s.Pool().Table().Nodes()
	counts := func(n *pool.Node) [3]int64 { return [3]int64{n.Active(), n.InFlight(), n.Sessions()} }
	settled := func() bool {
		for _, n := range nodes {
			if counts(n) != [3]int64{} {
				return false
			}
		}
		return true
	}
	checkZero := func(after string) {
		t.Helper()
		if waitCond(5*time.Second, settled) {
			return
		}
		for _, n := range nodes {
			if counts(n) == [3]int64{} {
				continue
			}
			t.Errorf("after %s: %s has active, in flight, sessions = %v, want zeros", after, n.Name, counts(n))
		}
		t.FailNow()
	}
	request := func(name string) int {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\nCookie: gcbSessionServer="+name+"\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("request to %s: %v", name, err)
		}
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	session := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, wiretest.Handshake("/ws?co-browse-node-id=CB_Good"))
		br := bufio.NewReader(c)
		if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 101 ") {
			c.Close()
			t.Fatalf("handshake answered %q %v", line, err)
		}
		return c, br
	}

	for range 3 {
		if st := request("CB_Good"); st != 200 {
			t.Fatalf("request to the good node: %d", st)
		}
	}
	checkZero("answered requests")
	if st := request("CB_HangUp"); st != 502 {
		t.Errorf("request to the node that hangs up: %d, want 502", st)
	}
	checkZero("a node that hung up")
	request("CB_Refused") // fails over, to whichever node is left
	checkZero("a refused node")

	good1 := s.Pool().Node("CB_Good")
	c, _ := session()
	if !waitCond(5*time.Second, func() bool { return counts(good1) == [3]int64{1, 0, 1} }) {
		t.Fatalf("a live session: active, in flight, sessions = %v, want [1 0 1]", counts(good1))
	}
	c.Close()
	checkZero("a session the client ended")

	c, br := session()
	defer c.Close()
	if !waitCond(5*time.Second, func() bool { return good1.Sessions() == 1 }) {
		t.Fatal("the session never counted")
	}
	good1.Fail(errors.New("node down"))
	io.Copy(io.Discard, br) // the 1012 Close, then the end
	checkZero("a session evicted by its node's failure")
	if good1.Stats.Evictions.Load() != 1 {
		t.Errorf("%d evictions, want 1", good1.Stats.Evictions.Load())
	}
}
