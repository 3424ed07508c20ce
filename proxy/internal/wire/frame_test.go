package wire

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/tether-lb/tether/proxy/internal/wire/wiretest"
)

// randomStream returns frames of assorted kinds and sizes, and the offsets
// where frames end.
func randomStream(r *rand.Rand, frames int) ([]byte, map[int]bool) {
	var s []byte
	ends := map[int]bool{0: true}
	for range frames {
		var n int
		switch r.IntN(4) {
		case 0:
			n = r.IntN(126)
		case 1:
			n = 126 + r.IntN(1000)
		case 2:
			n = 0xffff + r.IntN(3000)
		}
		op := []byte{0x0, 0x1, 0x2, 0x9, 0xA}[r.IntN(5)]
		s = append(s, wiretest.Frame(r.IntN(2) == 0, op, bytes.Repeat([]byte{'x'}, n), r.IntN(3) == 0)...)
		ends[len(s)] = true
	}
	return s, ends
}

func TestFrameTrackerBoundaries(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		stream, ends := randomStream(r, 20)
		var tr FrameTracker
		for i := 0; i < len(stream); {
			n := min(1+r.IntN(3000), len(stream)-i)
			// Within a random chunk, check the boundary at each offset.
			for j := i; j < i+n; j++ {
				tr.Advance(stream[j : j+1])
				if got := tr.AtBoundary(); got != ends[j+1] {
					t.Fatalf("offset %d: atBoundary %v, want %v", j+1, got, ends[j+1])
				}
			}
			i += n
		}
		// The same stream in large random splits ends at a boundary.
		var whole FrameTracker
		for i := 0; i < len(stream); {
			n := min(1+r.IntN(100000), len(stream)-i)
			whole.Advance(stream[i : i+n])
			i += n
		}
		if !whole.AtBoundary() {
			t.Fatal("not at a boundary after whole frames")
		}
	}
}

func TestFrameTrackerUntilBoundary(t *testing.T) {
	stream := append(wiretest.Frame(true, 0x2, make([]byte, 300), false), wiretest.Frame(true, 0x1, []byte("hi"), true)...)
	var tr FrameTracker
	read := 0
	for steps := 0; read < len(stream); steps++ {
		want := tr.UntilBoundary()
		if tr.AtBoundary() {
			want = 1
		}
		if steps > 100 || want == 0 {
			t.Fatal("untilBoundary does not make progress")
		}
		tr.Advance(stream[read : read+int(want)])
		read += int(want)
	}
	if !tr.AtBoundary() {
		t.Fatal("not at a boundary at the end of the stream")
	}
}

func TestFrameTrackerSeesClose(t *testing.T) {
	var tr FrameTracker
	tr.Advance(wiretest.Frame(true, 0x1, []byte("hello"), false))
	if tr.SawClose() {
		t.Fatal("text frame taken for a Close")
	}
	tr.Advance(wiretest.Frame(true, 0x8, []byte{0x03, 0xe8}, false))
	if !tr.SawClose() || !tr.AtBoundary() {
		t.Fatal("Close frame not seen")
	}
}

func TestCloseFrames(t *testing.T) {
	for code, f := range map[uint16][]byte{1012: closeRestart, 1001: closeGoingAway} {
		var tr FrameTracker
		tr.Advance(f)
		if !tr.AtBoundary() || !tr.SawClose() || f[0] != 0x88 || f[1]&0x80 != 0 {
			t.Fatalf("%d: malformed Close frame % x", code, f)
		}
		if got := binary.BigEndian.Uint16(f[2:4]); got != code {
			t.Fatalf("code %d, want %d", got, code)
		}
	}
}

// FuzzFrameTracker feeds arbitrary bytes in arbitrary splits: the tracker's
// state after the whole input never depends on how it was split.
func FuzzFrameTracker(f *testing.F) {
	f.Add(wiretest.Frame(true, 0x1, []byte("hello"), false), uint8(3))
	f.Add(wiretest.Frame(false, 0x2, make([]byte, 200), true), uint8(7))
	f.Add(append(wiretest.Frame(true, 0x9, nil, false), wiretest.Frame(true, 0x8, []byte{3, 0xf4}, false)...), uint8(1))
	f.Add([]byte{0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		var whole, split FrameTracker
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
