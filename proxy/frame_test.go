package proxy

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// wsFrame builds one frame: opcode, payload, masked or not.
func wsFrame(fin bool, op byte, payload []byte, masked bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	var m byte
	if masked {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		f = append(f, m|byte(n))
	case n <= 0xffff:
		f = append(f, m|126, byte(n>>8), byte(n))
	default:
		f = append(f, m|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	if masked {
		f = append(f, 1, 2, 3, 4)
	}
	return append(f, payload...)
}

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
		s = append(s, wsFrame(r.IntN(2) == 0, op, bytes.Repeat([]byte{'x'}, n), r.IntN(3) == 0)...)
		ends[len(s)] = true
	}
	return s, ends
}

func TestFrameTrackerBoundaries(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		stream, ends := randomStream(r, 20)
		var tr frameTracker
		for i := 0; i < len(stream); {
			n := min(1+r.IntN(3000), len(stream)-i)
			// Within a random chunk, check the boundary at each offset.
			for j := i; j < i+n; j++ {
				tr.advance(stream[j : j+1])
				if got := tr.atBoundary(); got != ends[j+1] {
					t.Fatalf("offset %d: atBoundary %v, want %v", j+1, got, ends[j+1])
				}
			}
			i += n
		}
		// The same stream in large random splits ends at a boundary.
		var whole frameTracker
		for i := 0; i < len(stream); {
			n := min(1+r.IntN(100000), len(stream)-i)
			whole.advance(stream[i : i+n])
			i += n
		}
		if !whole.atBoundary() {
			t.Fatal("not at a boundary after whole frames")
		}
	}
}

func TestFrameTrackerUntilBoundary(t *testing.T) {
	stream := append(wsFrame(true, 0x2, make([]byte, 300), false), wsFrame(true, 0x1, []byte("hi"), true)...)
	var tr frameTracker
	read := 0
	for steps := 0; read < len(stream); steps++ {
		want := tr.untilBoundary()
		if tr.atBoundary() {
			want = 1
		}
		if steps > 100 || want == 0 {
			t.Fatal("untilBoundary does not make progress")
		}
		tr.advance(stream[read : read+int(want)])
		read += int(want)
	}
	if !tr.atBoundary() {
		t.Fatal("not at a boundary at the end of the stream")
	}
}

func TestFrameTrackerSeesClose(t *testing.T) {
	var tr frameTracker
	tr.advance(wsFrame(true, 0x1, []byte("hello"), false))
	if tr.sawClose {
		t.Fatal("text frame taken for a Close")
	}
	tr.advance(wsFrame(true, 0x8, []byte{0x03, 0xe8}, false))
	if !tr.sawClose || !tr.atBoundary() {
		t.Fatal("Close frame not seen")
	}
}

func TestCloseFrames(t *testing.T) {
	for code, f := range map[uint16][]byte{1012: closeRestart, 1001: closeGoingAway} {
		var tr frameTracker
		tr.advance(f)
		if !tr.atBoundary() || !tr.sawClose || f[0] != 0x88 || f[1]&0x80 != 0 {
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
	f.Add(wsFrame(true, 0x1, []byte("hello"), false), uint8(3))
	f.Add(wsFrame(false, 0x2, make([]byte, 200), true), uint8(7))
	f.Add(append(wsFrame(true, 0x9, nil, false), wsFrame(true, 0x8, []byte{3, 0xf4}, false)...), uint8(1))
	f.Add([]byte{0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		var whole, split frameTracker
		whole.advance(data)
		s := int(step%64) + 1
		for i := 0; i < len(data); i += s {
			split.advance(data[i:min(i+s, len(data))])
		}
		if whole != split {
			t.Fatalf("state differs: whole %+v, split by %d %+v", whole, s, split)
		}
		if u := whole.untilBoundary(); whole.atBoundary() != (u == 0) {
			t.Fatalf("atBoundary %v but untilBoundary %d", whole.atBoundary(), u)
		}
	})
}
