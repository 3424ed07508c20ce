//go:build !race

package proxy

import "testing"

// TestWSAcceptAllocs: computing the accept a 101 must carry allocates
// nothing.
func TestWSAcceptAllocs(t *testing.T) {
	key := []byte(testWSKey)
	var dst [wsAcceptLen]byte
	if n := testing.AllocsPerRun(100, func() { wsAccept(&dst, key) }); n != 0 {
		t.Fatalf("wsAccept allocates %v times, want 0", n)
	}
}
