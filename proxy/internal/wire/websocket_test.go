package wire

import (
	"strings"
	"testing"

	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
)

// TestWSAccept computes RFC 6455's example and agrees with the test's own
// computation for other keys.
func TestWSAccept(t *testing.T) {
	var got [WSAcceptLen]byte
	WSAccept(&got, []byte(wiretest.Key))
	if string(got[:]) != wiretest.Accept {
		t.Fatalf("accept of the RFC's key: %q, want %q", got[:], wiretest.Accept)
	}
	for _, key := range []string{"AAAAAAAAAAAAAAAAAAAAAA==", "/////////////////////w==", "x3JJHMbDL1EzLkh9GBhXDw=="} {
		WSAccept(&got, []byte(key))
		if want := wiretest.Switched(key); !strings.Contains(want, "Accept: "+string(got[:])+"\r\n") {
			t.Errorf("accept of %q: %q, not in %q", key, got[:], want)
		}
	}
}
