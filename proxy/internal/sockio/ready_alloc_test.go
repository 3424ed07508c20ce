//go:build !race

package sockio

import (
	"testing"
	"time"

	"github.com/tether-lb/tether/proxy/internal/sockio/sockiotest"
)

// TestWaitReadableAllocs: an idle connection waits for its next bytes
// without allocating.
func TestWaitReadableAllocs(t *testing.T) {
	lb := sockiotest.NewPairs(t)
	peer, c := lb.Pair(t)
	defer peer.Close()
	defer c.Close()
	if _, err := peer.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(time.Minute))
	if n := testing.AllocsPerRun(1000, func() {
		if err := WaitReadable(c); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("WaitReadable allocates %v times per call, want 0", n)
	}
}
