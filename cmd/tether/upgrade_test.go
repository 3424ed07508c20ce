package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tether-lb/tether/handover"
	"github.com/tether-lb/tether/proxy"
)

// handed returns a listener's socket as a hand-over would give it.
func handed(t *testing.T, role string) (handover.Listener, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	return handover.Listener{Name: role, Addr: ln.Addr().String(), File: f}, ln
}

// TestOpenListeners: a handed socket serves its role (even when the flag
// names another port: logged), one no flag wants is closed, and a role
// nothing was handed for is opened afresh.
func TestOpenListeners(t *testing.T) {
	plain, plainLn := handed(t, roleListen)
	tlsH, _ := handed(t, roleTLS)
	odd, _ := handed(t, "another")
	var logBuf bytes.Buffer
	cfg := proxy.Config{Listen: "127.0.0.1:1", Admin: "127.0.0.1:0"}
	l, err := openListeners(&cfg, []handover.Listener{plain, tlsH, odd}, zerolog.New(&logBuf))
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	if l.plain == nil || l.plain.Addr().String() != plainLn.Addr().String() {
		t.Fatalf("plain listener %v, want the handed %s", l.plain, plainLn.Addr())
	}
	if l.tls != nil {
		t.Fatal("a TLS listener without --tls-listen")
	}
	if l.admin == nil || l.admin.Addr().String() == plainLn.Addr().String() {
		t.Fatalf("admin listener %v", l.admin)
	}
	for _, f := range []*os.File{plain.File, tlsH.File, odd.File} {
		if err := f.Close(); err == nil {
			t.Fatalf("%s: handed file left open", f.Name())
		}
	}
	for _, want := range []string{"kept the listener handed over", "not configured here", "unknown listener"} {
		if !strings.Contains(logBuf.String(), want) {
			t.Errorf("log lacks %q: %s", want, logBuf.String())
		}
	}
	// The handed socket accepts in its new owner after the old one closed.
	plainLn.Close()
	c, err := net.Dial("tcp", l.plain.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	l.plain.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	sc, err := l.plain.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sc.Close()
}

// TestSDNotify: with $NOTIFY_SOCKET set, sdNotify sends its state in one
// datagram; without it, it does nothing.
func TestSDNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	want := fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid())
	if err := sdNotify(want); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 256)
	n, err := c.Read(b)
	if err != nil || string(b[:n]) != want {
		t.Fatalf("read %q, %v", b[:n], err)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := sdNotify("READY=1"); err != nil {
		t.Fatal(err)
	}
}
