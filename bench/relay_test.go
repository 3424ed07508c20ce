package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fasthttp/websocket"
)

func TestMailboxBounds(t *testing.T) {
	t.Parallel()
	m := newMailbox()
	for i := range queueMessages {
		if !m.push(message{data: []byte{byte(i)}}, 0, nil) {
			t.Fatalf("push %d refused", i)
		}
	}
	if m.push(message{data: []byte("one too many")}, 0, nil) {
		t.Fatal("push beyond queueMessages accepted")
	}
	for i := range queueMessages {
		msg, err := m.pop(time.Second, nil, nil)
		if err != nil || msg.data[0] != byte(i) {
			t.Fatalf("pop %d: %v %v", i, msg.data, err)
		}
	}
	if !m.empty() {
		t.Fatal("not empty after popping all")
	}

	// Bytes: a message bigger than the bound fits an empty queue only.
	big := message{data: make([]byte, queueBytes+1)}
	if !m.push(big, 0, nil) {
		t.Fatal("big message refused by an empty queue")
	}
	if m.push(message{data: []byte("x")}, 0, nil) {
		t.Fatal("push accepted beyond queueBytes")
	}
}

func TestMailboxWaits(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		m := newMailbox()
		start := time.Now()
		if _, err := m.pop(25*time.Second, nil, nil); !errors.Is(err, errPopTimeout) {
			t.Fatalf("pop of an empty queue: %v", err)
		}
		if d := time.Since(start); d != 25*time.Second {
			t.Fatalf("pop waited %v, want 25s", d)
		}

		// A waiting pop gets a later push.
		got := make(chan string, 1)
		go func() {
			msg, err := m.pop(0, nil, nil)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(msg.data)
		}()
		synctest.Wait()
		m.push(message{data: []byte("late")}, 0, nil)
		if s := <-got; s != "late" {
			t.Fatalf("waiting pop got %q", s)
		}

		// A full queue: push waits for room, then gives up after its wait.
		for range queueMessages {
			m.push(message{data: []byte("x")}, 0, nil)
		}
		start = time.Now()
		if m.push(message{data: []byte("y")}, relayWait, nil) {
			t.Fatal("push into a full queue succeeded")
		}
		if d := time.Since(start); d != relayWait {
			t.Fatalf("push waited %v, want %v", d, relayWait)
		}
		pushed := make(chan bool, 1)
		go func() { pushed <- m.push(message{data: []byte("y")}, relayWait, nil) }()
		time.Sleep(relayWait / 2)
		if _, err := m.pop(0, nil, nil); err != nil {
			t.Fatal(err)
		}
		if !<-pushed {
			t.Fatal("push did not take the room a pop made")
		}

		// done and stop end waits at once.
		done := make(chan struct{})
		close(done)
		if m.push(message{}, time.Hour, done) {
			t.Fatal("push into a full queue succeeded after done")
		}
		empty := newMailbox()
		if _, err := empty.pop(time.Hour, nil, done); !errors.Is(err, errPopStopped) {
			t.Fatalf("pop after stop: %v", err)
		}
	})
}

func TestSessionTable(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var tab sessionTable
		tab.init(time.Minute)

		// Nothing queued: the session goes with its last reference.
		s, _ := tab.acquire("a")
		s2, _ := tab.acquire("a")
		if s != s2 || tab.len() != 1 {
			t.Fatal("acquire of one id gave two sessions")
		}
		tab.release(s)
		tab.release(s2)
		if tab.len() != 0 {
			t.Fatal("unused empty session kept")
		}

		// Messages queued: kept for the idle TTL, then swept.
		s, _ = tab.acquire("b")
		s.inbox[roleAgent].push(message{data: []byte("m")}, 0, nil)
		tab.release(s)
		if tab.len() != 1 {
			t.Fatal("session with messages dropped")
		}
		time.Sleep(30 * time.Second)
		s, _ = tab.acquire("b")
		if msg, err := s.inbox[roleAgent].pop(time.Second, nil, nil); err != nil || string(msg.data) != "m" {
			t.Fatalf("message lost within the TTL: %q %v", msg.data, err)
		}
		s.inbox[roleAgent].push(message{data: []byte("n")}, 0, nil)
		tab.release(s)
		time.Sleep(2 * time.Minute)
		other, _ := tab.acquire("c") // sweeps
		if tab.len() != 1 {
			t.Fatalf("%d sessions after the TTL, want only the new one", tab.len())
		}
		tab.release(other)
	})
}

func TestNodeWebSocketRelay(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	cookie := DefaultCookie + "=CB_1"
	cust := n.dialWS(t, "session=s1&role=customer", cookie)
	agent := n.dialWS(t, "session=s1&role=agent", cookie)
	other := n.dialWS(t, "session=s2&role=agent", cookie)

	big := make([]byte, 3<<20)
	Pattern(big, 7)
	for _, tc := range []struct {
		name     string
		from, to *websocket.Conn
		kind     int
		data     []byte
	}{
		{"customer to agent text", cust, agent, websocket.TextMessage, []byte("hello agent")},
		{"agent to customer binary", agent, cust, websocket.BinaryMessage, []byte{0, 1, 2, 255}},
		{"customer to agent 3 MB", cust, agent, websocket.BinaryMessage, big},
		{"agent to customer 3 MB", agent, cust, websocket.BinaryMessage, big},
	} {
		if err := tc.from.WriteMessage(tc.kind, tc.data); err != nil {
			t.Fatalf("%s: write: %v", tc.name, err)
		}
		_ = tc.to.SetReadDeadline(time.Now().Add(10 * time.Second))
		kind, data, err := tc.to.ReadMessage()
		if err != nil {
			t.Fatalf("%s: read: %v", tc.name, err)
		}
		if kind != tc.kind || !bytes.Equal(data, tc.data) {
			t.Fatalf("%s: got type %d, %d bytes; want type %d, %d bytes", tc.name, kind, len(data), tc.kind, len(tc.data))
		}
	}
	// Another session got nothing.
	_ = other.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := other.ReadMessage(); err == nil {
		t.Fatal("session s2 received a message of s1")
	}

	// A Close frame is answered with a Close frame.
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
	if err := cust.WriteControl(websocket.CloseMessage, msg, time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	_ = cust.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := cust.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("after Close: %v, want a Close 1000 reply", err)
	}
	st := n.Stats()
	if st.WSTotal != 3 || st.WSMessages != 4 || st.Relayed != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestNodeWebSocketEcho(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	c := n.dialWS(t, "role=echo", "")
	big := make([]byte, 3<<20+1)
	Pattern(big, 0)
	for _, tc := range []struct {
		kind int
		data []byte
	}{
		{websocket.TextMessage, []byte("ping")},
		{websocket.BinaryMessage, big},
		{websocket.BinaryMessage, nil},
	} {
		if err := c.WriteMessage(tc.kind, tc.data); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		kind, data, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if kind != tc.kind || !bytes.Equal(data, tc.data) {
			t.Fatalf("echo: type %d, %d bytes; want type %d, %d bytes", kind, len(data), tc.kind, len(tc.data))
		}
	}
}

func TestNodeWebSocketRefused(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1"})
	for _, tc := range []struct {
		name, query, cookie string
		status              int
	}{
		{"foreign cookie", "session=s&role=customer", DefaultCookie + "=CB_2", 409},
		{"foreign dotted cookie", "role=echo", DefaultCookie + "=a.CB_2", 409},
		{"bad role", "session=s&role=boss", "", 400},
		{"no session", "role=agent", "", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, resp, err := n.tryDialWS(tc.query, tc.cookie)
			if err == nil {
				c.Close()
				t.Fatal("upgrade succeeded")
			}
			if resp == nil || resp.StatusCode != tc.status {
				t.Fatalf("err %v, resp %v; want status %d", err, resp, tc.status)
			}
			if got := resp.Header.Get(HeaderNode); got != "CB_1" {
				t.Errorf("X-Node %q", got)
			}
			if tc.status == 409 && resp.Header.Get(HeaderSessionEnded) != "1" {
				t.Error("409 without X-Session-Ended")
			}
		})
	}
	// Without a cookie the 101 sets it.
	_, resp, err := n.tryDialWS("role=echo", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Set-Cookie"); got != "gcbSessionServer=CB_1; Path=/" {
		t.Errorf("101 Set-Cookie %q", got)
	}
	if got := resp.Header.Get(HeaderNode); got != "CB_1" {
		t.Errorf("101 X-Node %q", got)
	}
}

func TestNodeLongPoll(t *testing.T) {
	t.Parallel()
	n := startNode(t, NodeConfig{Name: "CB_1", PollWait: 200 * time.Millisecond})

	t.Run("times out", func(t *testing.T) {
		resp, body := n.do(t, "GET", PathPoll+"?session=p1&role=agent", "", nil)
		if resp.StatusCode != 204 || body != "" {
			t.Fatalf("poll: %d %q, want 204", resp.StatusCode, body)
		}
	})
	t.Run("send then poll", func(t *testing.T) {
		resp, _ := n.do(t, "POST", PathSend+"?session=p2&role=customer", "", strings.NewReader("dom snapshot"))
		if resp.StatusCode != 202 {
			t.Fatalf("send: %d", resp.StatusCode)
		}
		// The sender's own role gets nothing.
		resp, _ = n.do(t, "GET", PathPoll+"?session=p2&role=customer", "", nil)
		if resp.StatusCode != 204 {
			t.Fatalf("customer poll: %d, want 204", resp.StatusCode)
		}
		resp, body := n.do(t, "GET", PathPoll+"?session=p2&role=agent", "", nil)
		if resp.StatusCode != 200 || body != "dom snapshot" {
			t.Fatalf("agent poll: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("poll waits for a send", func(t *testing.T) {
		slow := startNode(t, NodeConfig{Name: "CB_1", PollWait: 20 * time.Second})
		got := make(chan string, 1)
		go func() {
			resp, err := slow.client.Get(slow.url + PathPoll + "?session=p3&role=customer")
			if err != nil {
				got <- err.Error()
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			got <- fmt.Sprint(resp.StatusCode, " ", string(body))
		}()
		// Whether the poll starts before or after the send, the message
		// reaches it: a send is queued until a poll takes it.
		resp, _ := slow.do(t, "POST", PathSend+"?session=p3&role=agent", "", strings.NewReader("cursor 10,20"))
		if resp.StatusCode != 202 {
			t.Fatalf("send: %d", resp.StatusCode)
		}
		select {
		case s := <-got:
			if s != "200 cursor 10,20" {
				t.Fatalf("poll: %q", s)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("poll did not return")
		}
	})
	t.Run("websocket to poll and send to websocket", func(t *testing.T) {
		agent := n.dialWS(t, "session=p4&role=agent", "")
		resp, _ := n.do(t, "POST", PathSend+"?session=p4&role=customer", "", strings.NewReader("to agent"))
		if resp.StatusCode != 202 {
			t.Fatalf("send: %d", resp.StatusCode)
		}
		_ = agent.SetReadDeadline(time.Now().Add(10 * time.Second))
		kind, data, err := agent.ReadMessage()
		if err != nil || kind != websocket.TextMessage || string(data) != "to agent" {
			t.Fatalf("agent ws: %d %q %v", kind, data, err)
		}
		if err := agent.WriteMessage(websocket.BinaryMessage, []byte("to customer")); err != nil {
			t.Fatal(err)
		}
		// The agent's message is queued even if the poll starts later.
		resp, body := n.do(t, "GET", PathPoll+"?session=p4&role=customer", "", nil)
		if resp.StatusCode != 200 || body != "to customer" {
			t.Fatalf("customer poll: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		for _, tc := range []struct{ method, path string }{
			{"GET", PathPoll + "?session=x&role=echo"},
			{"GET", PathPoll + "?role=agent"},
			{"GET", PathSend + "?session=x&role=agent"},
			{"POST", PathSend + "?session=x&role=nobody"},
		} {
			resp, _ := n.do(t, tc.method, tc.path, "", nil)
			if resp.StatusCode != 400 && resp.StatusCode != 405 {
				t.Errorf("%s %s: %d", tc.method, tc.path, resp.StatusCode)
			}
		}
	})
}
