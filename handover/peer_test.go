//go:build linux

package handover

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

func TestPeerCheck(t *testing.T) {
	p := Peer{UID: 1000, PID: 4242}
	cases := []struct {
		name string
		cred *Cred
		ok   bool
	}{
		{"the new process", &Cred{PID: 4242, UID: 1000}, true},
		{"another process of the user", &Cred{PID: 4243, UID: 1000}, false},
		{"the new pid under another user", &Cred{PID: 4242, UID: 1001}, false},
		{"root", &Cred{PID: 4242, UID: 0}, false},
		{"no credentials", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Check(tc.cred)
			if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrPeer) {
				t.Fatalf("Check = %v, want ok %v", err, tc.ok)
			}
		})
	}
	if err := (Peer{UID: 1000}).Check(&Cred{PID: 7, UID: 1000}); err != nil {
		t.Fatalf("any pid of the user: %v", err)
	}
}

// TestPeerCredSameUID reads the credentials of a real peer over the
// abstract socket the old process listens on: this process, same UID.
func TestPeerCredSameUID(t *testing.T) {
	ln, addr, err := listenAbstract()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := net.Dial("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	cred, err := PeerCred(sc)
	if err != nil {
		t.Fatal(err)
	}
	if cred.PID != os.Getpid() || int(cred.UID) != os.Getuid() {
		t.Fatalf("cred %+v, want pid %d uid %d", cred, os.Getpid(), os.Getuid())
	}
	if err := (Peer{UID: uint32(os.Getuid()), PID: os.Getpid()}).Check(cred); err != nil {
		t.Fatal(err)
	}
	if err := (Peer{UID: uint32(os.Getuid()), PID: os.Getpid() + 1}).Check(cred); !errors.Is(err, ErrPeer) {
		t.Fatalf("a peer that is not the new process: %v", err)
	}
}
