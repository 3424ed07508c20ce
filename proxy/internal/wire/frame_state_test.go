package wire

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
)

// TestFrameTrackerStateMoves exports a tracker's state at every offset of a
// stream, imports it into a fresh tracker and follows the rest of the
// stream with it: the moved tracker finds the same boundaries and ends in
// the same state as the one that saw everything.
func TestFrameTrackerStateMoves(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	stream, ends := randomStream(r, 12)
	stream = append(stream, wiretest.Frame(true, 0x8, []byte{0x03, 0xe8}, false)...)
	ends[len(stream)] = true
	var whole FrameTracker
	whole.Advance(stream)
	for cut := 0; cut <= len(stream); cut += 1 + r.IntN(97) {
		var before FrameTracker
		before.Advance(stream[:cut])
		state, err := before.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var moved FrameTracker
		if err := moved.UnmarshalBinary(state); err != nil {
			t.Fatalf("offset %d: state % x refused: %v", cut, state, err)
		}
		if !sameState(&moved, &before) {
			t.Fatalf("offset %d: imported %+v, exported %+v", cut, moved, before)
		}
		if moved.AtBoundary() != ends[cut] {
			t.Fatalf("offset %d: moved tracker at a boundary %v, want %v", cut, moved.AtBoundary(), ends[cut])
		}
		moved.Advance(stream[cut:])
		if !sameState(&moved, &whole) {
			t.Fatalf("offset %d: moved tracker ends %+v, want %+v", cut, moved, whole)
		}
	}
	if !whole.SawClose() || !whole.AtBoundary() {
		t.Fatal("the stream's Close was not seen")
	}
}

// sameState compares what two trackers export: header bytes of a frame
// already passed are left in hdr and are no part of the state.
func sameState(a, b *FrameTracker) bool {
	return bytes.Equal(a.AppendState(nil), b.AppendState(nil))
}

func TestFrameTrackerStateRefused(t *testing.T) {
	valid := func(flags, hn byte, hdr []byte, remain uint64) []byte {
		b := append([]byte{trackerStateVersion, flags, hn}, hdr...)
		return binary.BigEndian.AppendUint64(b, remain)
	}
	cases := []struct {
		name  string
		state []byte
		ok    bool
	}{
		{"fresh", valid(0, 0, nil, 0), true},
		{"inside a payload, Close seen", valid(1, 0, nil, 1<<40), true},
		{"one header byte", valid(0, 1, []byte{0x82}, 0), true},
		{"longest header but one byte", valid(0, 13, append([]byte{0x82, 0xff}, make([]byte, 11)...), 0), true},
		{"empty", nil, false},
		{"short", []byte{trackerStateVersion, 0, 0}, false},
		{"unknown version", append([]byte{2}, valid(0, 0, nil, 0)[1:]...), false},
		{"unknown flags", valid(2, 0, nil, 0), false},
		{"header and payload at once", valid(0, 1, []byte{0x82}, 5), false},
		{"header already complete", valid(0, 2, []byte{0x82, 0x05}, 0), false},
		{"extended header already complete", valid(0, 4, []byte{0x82, 0x7e, 0x01, 0x00}, 0), false},
		{"header longer than any", valid(0, 14, make([]byte, 14), 0), false},
		{"count beyond the bytes", append([]byte{trackerStateVersion, 0, 5, 0x82}, make([]byte, 8)...), false},
		{"trailing bytes", append(valid(0, 0, nil, 0), 0), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var tr FrameTracker
			tr.Advance(wiretest.Frame(true, 0x2, make([]byte, 10), false)[:5])
			before := tr
			err := tr.UnmarshalBinary(tc.state)
			if (err == nil) != tc.ok {
				t.Fatalf("UnmarshalBinary(% x) = %v, want ok %v", tc.state, err, tc.ok)
			}
			if !tc.ok {
				if tr != before {
					t.Fatalf("a refused state changed the tracker to %+v", tr)
				}
				return
			}
			if again := tr.AppendState(nil); !bytes.Equal(again, tc.state) {
				t.Fatalf("exported % x, imported % x", again, tc.state)
			}
		})
	}
}

// FuzzFrameTrackerState imports arbitrary state, then follows arbitrary
// bytes: whatever the state is, the import refuses it or gives a tracker
// that never panics, exports the same state again, and agrees with itself
// however its input is split.
func FuzzFrameTrackerState(f *testing.F) {
	for _, cut := range []int{0, 1, 2, 3, 9, 20} {
		var tr FrameTracker
		tr.Advance(wiretest.Frame(true, 0x2, make([]byte, 300), true)[:cut])
		state, _ := tr.MarshalBinary()
		f.Add(state, wiretest.Frame(true, 0x1, []byte("next"), false), uint8(cut))
	}
	f.Add([]byte{1, 0, 13, 0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, []byte{1, 2, 3}, uint8(1))
	f.Fuzz(func(t *testing.T, state, data []byte, step uint8) {
		var whole FrameTracker
		if err := whole.UnmarshalBinary(state); err != nil {
			return
		}
		if again := whole.AppendState(nil); !bytes.Equal(again, state) {
			t.Fatalf("imported % x, exports % x", state, again)
		}
		split := whole
		whole.Advance(data)
		s := int(step%64) + 1
		for i := 0; i < len(data); i += s {
			split.Advance(data[i:min(i+s, len(data))])
		}
		if whole != split {
			t.Fatalf("state differs: whole %+v, split by %d %+v", whole, s, split)
		}
		if u := whole.UntilBoundary(); whole.AtBoundary() != (u == 0) {
			t.Fatalf("atBoundary %v but untilBoundary %d", whole.AtBoundary(), u)
		}
	})
}
