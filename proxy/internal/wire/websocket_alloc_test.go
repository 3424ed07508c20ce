//go:build !race

package wire

import (
	"testing"

	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
)

// TestWSAcceptAllocs: computing the accept a 101 must carry allocates
// nothing.
func TestWSAcceptAllocs(t *testing.T) {
	key := []byte(wiretest.Key)
	var dst [WSAcceptLen]byte
	if n := testing.AllocsPerRun(100, func() { WSAccept(&dst, key) }); n != 0 {
		t.Fatalf("WSAccept allocates %v times, want 0", n)
	}
}
