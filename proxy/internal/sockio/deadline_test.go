package sockio

import (
	"math"
	"testing"
	"time"
)

// TestRateDeadlineNoOverflow: a body read far past what int64 nanoseconds
// at the minimum rate hold sets no bound, instead of a deadline in the past
// that would cut a healthy upload with 408.
func TestRateDeadlineNoOverflow(t *testing.T) {
	now := time.Now().UnixNano()
	for _, tc := range []struct {
		name       string
		rate, read int64
	}{
		{"1 B/s, 8 GiB", 1, 8 << 30},
		{"1024 B/s, 8 EiB", 1024, math.MaxInt64 - 1},
		{"1 B/s, at the edge", 1, (math.MaxInt64 - now) / int64(time.Second)},
	} {
		d := &DeadlineConn{minRate: tc.rate, rateFrom: now, rateRead: tc.read}
		if got := d.rateDeadline(); got < now {
			t.Errorf("%s: deadline %v, before the body began (%v)", tc.name, time.Unix(0, got), time.Unix(0, now))
		}
	}
	d := &DeadlineConn{minRate: 1024, rateFrom: now, rateRead: 2048}
	if got, want := d.rateDeadline(), now+2*int64(time.Second); got != want {
		t.Errorf("2048 bytes at 1024 B/s: deadline %d, want %d", got, want)
	}
}
