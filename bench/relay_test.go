package bench

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
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
