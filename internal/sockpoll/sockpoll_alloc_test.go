//go:build !race

package sockpoll

import "testing"

// TestReadableAllocs: the probe allocates nothing.
func TestReadableAllocs(t *testing.T) {
	a, _ := tcpPair(t)
	fd := fdOf(t, a)
	if n := testing.AllocsPerRun(100, func() { Readable(fd) }); n != 0 {
		t.Fatalf("Readable allocates %v times per call", n)
	}
}
