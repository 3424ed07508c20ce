package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestStopAccepting: StopAccepting closes the data and admin listeners
// (Serve and ServeAdmin return nil, not an error that would stop tether)
// and drains nothing: a keep-alive connection already open is still served
// without Connection: close.
func TestStopAccepting(t *testing.T) {
	node := startRawNode(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	s, err := New(oneNode(node.ln.Addr().String()), zerolog.Nop(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(t.Context()) })
	ln, err := Listen("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	aln, err := Listen("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	served, admin := make(chan error, 1), make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	go func() { admin <- s.ServeAdmin(aln) }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	ask := func() *http.Response {
		t.Helper()
		io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
		r, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		return r
	}
	ask()
	// The admin listener answers before it stops.
	if !waitUntil(5*time.Second, func() bool {
		r, err := http.Get("http://" + aln.Addr().String() + "/livez")
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	}) {
		t.Fatal("admin listener did not answer")
	}

	s.StopAccepting()
	for name, ch := range map[string]chan error{"Serve": served, "ServeAdmin": admin} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("%s returned %v after StopAccepting", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not return", name)
		}
	}
	if r := ask(); r.StatusCode != 200 || r.Close {
		t.Fatalf("after StopAccepting: status %d, close %v; want 200 kept alive", r.StatusCode, r.Close)
	}
	if s.isClosing() {
		t.Fatal("StopAccepting began a drain")
	}
	// A listener given after StopAccepting is closed at once.
	late, err := Listen("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(late); err != nil {
		t.Fatal(err)
	}
	if _, err := late.Accept(); err == nil {
		t.Fatal("a listener given after StopAccepting accepts")
	}
}

// waitUntil polls cond every 10ms until it holds or d passes.
func waitUntil(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
