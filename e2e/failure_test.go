package e2e

import (
	"testing"
	"time"
)

// TestFailoverWhenNodeKilled kills the node a session is sticky to: its
// next requests, on the same client connection, are answered at once by
// the other node (409 with X-Session-Ended: the session is not its own),
// and the access log says why=failover.
func TestFailoverWhenNodeKilled(t *testing.T) {
	// Not parallel: it runs alone, before the parallel tests, so that its
	// time bounds do not measure the load of the other tests.
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2})
	const cookie = "Cookie: gcbSessionServer=CB_Server_2\r\n"

	c := dialRaw(t, tt.addr)
	// Fill tether's pool with idle connections to the node that dies.
	for i := range 3 {
		if r := c.do(t, get("/cobrowse/before", cookie)); r.status != 200 || r.get("X-Node") != node2 {
			t.Fatalf("request %d before the kill: status %d from %q", i, r.status, r.get("X-Node"))
		}
	}
	n2.stop()

	for i := range 5 {
		start := time.Now()
		c.SetDeadline(start.Add(5 * time.Second))
		r := c.do(t, get("/cobrowse/after", cookie))
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("request %d after the kill took %v, want under 2s", i, el)
		}
		if r.status != 409 || r.get("X-Node") != node1 || r.get("X-Session-Ended") != "1" {
			t.Fatalf("request %d after the kill: status %d from %q, X-Session-Ended %q; want 409 from %s with X-Session-Ended: 1",
				i, r.status, r.get("X-Node"), r.get("X-Session-Ended"), node1)
		}
	}
	for _, l := range tt.waitAccess(t, 5, 10*time.Second, pathIs("/cobrowse/after")) {
		if l["why"] != "failover" || l["node"] != node1 {
			t.Fatalf("access log: why %v node %v, want failover to %s: %v", l["why"], l["node"], node1, l)
		}
	}
}

// TestEveryNodeDead kills both nodes: requests are answered 503 with
// Retry-After at once, on a kept-alive connection and on new ones.
func TestEveryNodeDead(t *testing.T) {
	// Not parallel: it runs alone, before the parallel tests, so that its
	// time bounds do not measure the load of the other tests.
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2})

	kept := dialRaw(t, tt.addr)
	for range 4 {
		if r := kept.do(t, get("/cobrowse/before", "")); r.status != 200 {
			t.Fatalf("before the kill: status %d", r.status)
		}
	}
	n1.stop()
	n2.stop()

	check := func(name string, c *rawConn) {
		t.Helper()
		start := time.Now()
		c.SetDeadline(start.Add(5 * time.Second))
		r := c.do(t, get("/cobrowse/dead", "Cookie: gcbSessionServer=CB_Server_1\r\n"))
		if el := time.Since(start); el >= time.Second {
			t.Fatalf("%s: answered after %v, want under 1s", name, el)
		}
		if r.status != 503 || r.get("Retry-After") == "" {
			t.Fatalf("%s: status %d Retry-After %q, want 503 with Retry-After", name, r.status, r.get("Retry-After"))
		}
	}
	check("kept-alive connection", kept)
	for range 3 {
		check("new connection", dialRaw(t, tt.addr))
	}
}

// TestHealthSwitch flips a node's health endpoint: it leaves the rotation
// within fall×interval+timeout (startTether: 100ms interval, 300ms timeout,
// fall 2 by default) and comes back after its rise.
func TestHealthSwitch(t *testing.T) {
	// Not parallel: it runs alone, before the parallel tests, so that its
	// time bounds do not measure the load of the other tests.
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2})
	c := dialRaw(t, tt.addr)

	// newSessions opens k sessions (no cookie) and counts them by node.
	newSessions := func(k int) map[string]int {
		seen := map[string]int{}
		for range k {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			r := c.do(t, get("/cobrowse/new", ""))
			if r.status != 200 {
				t.Fatalf("new session: status %d from %q", r.status, r.get("X-Node"))
			}
			seen[r.get("X-Node")]++
		}
		return seen
	}
	if seen := newSessions(10); seen[node1] != 5 || seen[node2] != 5 {
		t.Fatalf("healthy: sessions by node %v, want 5 each", seen)
	}

	// fall×interval (+10% jitter) + timeout, and 250ms for scheduling.
	const outBound = 2*110*time.Millisecond + 300*time.Millisecond + 250*time.Millisecond
	n1.SetHealthy(false)
	start := time.Now()
	// Two balanced picks in a row cover both nodes while both are in.
	if !waitFor(2*outBound, func() bool { return newSessions(2)[node1] == 0 }) {
		t.Fatalf("%s still gets new sessions %v after its health check fails", node1, time.Since(start))
	}
	if el := time.Since(start); el > outBound {
		t.Fatalf("%s left the rotation after %v, want within %v", node1, el, outBound)
	}
	if seen := newSessions(10); seen[node2] != 10 {
		t.Fatalf("%s unhealthy: sessions by node %v, want all 10 on %s", node1, seen, node2)
	}

	n1.SetHealthy(true)
	// rise×interval (+10% jitter) and scheduling.
	if !waitFor(2*time.Second, func() bool { return newSessions(2)[node1] > 0 }) {
		t.Fatalf("%s not back in the rotation 2s after its health check passes", node1)
	}
	if seen := newSessions(10); seen[node1] != 5 || seen[node2] != 5 {
		t.Fatalf("back: sessions by node %v, want 5 each", seen)
	}
}
