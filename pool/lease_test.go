package pool

import (
	"sync"
	"testing"
)

// TestLeaseReleasedOnce: a lease gives its counts back on its first Release
// only; the zero lease holds nothing; many leases taken and released
// concurrently leave every count at zero.
func TestLeaseReleasedOnce(t *testing.T) {
	p := newTestPool(t, Config{}, "http://127.0.0.1:1")
	n := p.Node("CB_Server_1")
	counts := func() [3]int64 { return [3]int64{n.Active(), n.InFlight(), n.Sessions()} }

	a, b := n.Acquire(), n.Acquire()
	s := n.AcquireSession()
	if got := counts(); got != [3]int64{3, 2, 1} {
		t.Fatalf("two requests and a session: active, in flight, sessions = %v, want [3 2 1]", got)
	}
	if s.Node() != n {
		t.Fatalf("session lease holds %v, want its node", s.Node())
	}
	a.Release()
	a.Release()
	if got := counts(); got != [3]int64{2, 1, 1} {
		t.Fatalf("one request released twice: %v, want [2 1 1]", got)
	}
	s.Release()
	s.Release()
	if got := counts(); got != [3]int64{1, 1, 0} {
		t.Fatalf("the session released twice: %v, want [1 1 0]", got)
	}
	if s.Node() != nil {
		t.Fatal("a released session lease still holds its node")
	}
	b.Release()
	var zero Lease
	zero.Release()
	var zeroSession SessionLease
	zeroSession.Release()
	if got := counts(); got != [3]int64{} {
		t.Fatalf("all released: %v, want zeros", got)
	}

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				l := n.Acquire()
				s := n.AcquireSession()
				l.Release()
				s.Release()
				l.Release()
			}
		})
	}
	wg.Wait()
	if got := counts(); got != [3]int64{} {
		t.Fatalf("after concurrent leases: %v, want zeros", got)
	}
}
