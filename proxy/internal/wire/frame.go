package wire

import (
	"encoding/binary"
	"errors"
)

// FrameTracker follows WebSocket frame boundaries (RFC 6455 §5.2) in a byte
// stream as it passes, reading only frame headers: it never copies or
// re-frames payloads. The node→client copier uses it to write a Close frame
// of tether's own between two frames. Its state is a few dozen bytes.
type FrameTracker struct {
	hdr      [14]byte // header bytes of the frame being read, while hn > 0
	hn       uint8    // header bytes collected so far
	sawClose bool     // a Close frame (opcode 8) has started
	remain   uint64   // payload bytes left in the current frame
}

// atBoundary reports whether the bytes seen so far end exactly at the end
// of a frame (or before any frame).
func (t *FrameTracker) AtBoundary() bool { return t.hn == 0 && t.remain == 0 }

// headerLen returns the length of a frame header whose second byte is b1
// (the mask bit and the 7-bit length): 2, plus 2 or 8 for extended lengths,
// plus 4 for a mask key.
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// advance moves the tracker over p.
func (t *FrameTracker) Advance(p []byte) {
	for len(p) > 0 {
		if t.remain > 0 {
			if uint64(len(p)) < t.remain {
				t.remain -= uint64(len(p))
				return
			}
			p = p[t.remain:]
			t.remain = 0
			continue
		}
		// Collect header bytes until the header is complete.
		t.hdr[t.hn] = p[0]
		t.hn++
		p = p[1:]
		if t.hn < 2 || int(t.hn) < headerLen(t.hdr[1]) {
			continue
		}
		t.remain = t.payloadLen()
		t.hn = 0
		if t.hdr[0]&0x0f == 0x8 {
			t.sawClose = true
		}
	}
}

// payloadLen decodes the payload length of the complete header in hdr.
func (t *FrameTracker) payloadLen() uint64 {
	switch l := t.hdr[1] & 0x7f; l {
	case 126:
		return uint64(t.hdr[2])<<8 | uint64(t.hdr[3])
	case 127:
		var v uint64
		for _, b := range t.hdr[2:10] {
			v = v<<8 | uint64(b)
		}
		return v
	default:
		return uint64(l)
	}
}

// untilBoundary returns how many bytes may be read without passing the end
// of the current frame; with a header in progress, what it still lacks at
// least (one byte when its length is not known yet). Zero at a boundary.
func (t *FrameTracker) UntilBoundary() uint64 {
	if t.remain > 0 {
		return t.remain
	}
	if t.hn == 0 {
		return 0
	}
	if t.hn < 2 {
		return 1
	}
	return uint64(headerLen(t.hdr[1]) - int(t.hn))
}

// Close frames tether writes toward clients, built once.
var (
	closeRestart   = closeFrame(1012, "service restart")
	closeGoingAway = closeFrame(1001, "going away")
)

// closeFrame returns an unmasked server Close frame with a status code and a
// short reason (RFC 6455 §5.5.1).
func closeFrame(code uint16, reason string) []byte {
	f := make([]byte, 0, 4+len(reason))
	f = append(f, 0x88, byte(2+len(reason)), byte(code>>8), byte(code))
	return append(f, reason...)
}

// CloseFrameFor returns the Close frame for a code tether sends.
func CloseFrameFor(code uint16) []byte {
	if code == 1001 {
		return closeGoingAway
	}
	return closeRestart
}

// SawClose reports whether a Close frame (opcode 8) has started.
func (t *FrameTracker) SawClose() bool { return t.sawClose }

// trackerStateVersion is the first byte of a FrameTracker's exported state.
const trackerStateVersion = 1

// errTrackerState refuses exported tracker state that no tracker could
// have: it comes from another process and is not trusted.
var errTrackerState = errors.New("proxy: bad frame tracker state")

// MarshalBinary exports the tracker's position in its stream (a header in
// progress, the payload bytes left in the current frame, whether a Close
// frame started), so that another process can go on following the same
// stream (UnmarshalBinary). It implements encoding.BinaryMarshaler and never
// fails. The state is 11 bytes plus the header bytes collected so far.
func (t *FrameTracker) MarshalBinary() ([]byte, error) {
	return t.AppendState(make([]byte, 0, 11+int(t.hn))), nil
}

// AppendState appends the tracker's exported state (see MarshalBinary) to b.
func (t *FrameTracker) AppendState(b []byte) []byte {
	var flags byte
	if t.sawClose {
		flags = 1
	}
	b = append(b, trackerStateVersion, flags, t.hn)
	b = append(b, t.hdr[:t.hn]...)
	return binary.BigEndian.AppendUint64(b, t.remain)
}

// UnmarshalBinary sets the tracker from state exported by MarshalBinary. It
// refuses state no tracker could have (a header longer than its own length
// field allows, a header in progress with payload left, unknown flags, a
// wrong length or version), leaving the tracker unchanged: a tracker it
// accepts behaves like one that saw the stream itself.
func (t *FrameTracker) UnmarshalBinary(b []byte) error {
	if len(b) < 11 || b[0] != trackerStateVersion || b[1]&^1 != 0 {
		return errTrackerState
	}
	hn := int(b[2])
	if len(b) != 11+hn || hn >= len(t.hdr) {
		return errTrackerState
	}
	var n FrameTracker
	copy(n.hdr[:], b[3:3+hn])
	n.hn = uint8(hn)
	n.sawClose = b[1]&1 != 0
	n.remain = binary.BigEndian.Uint64(b[3+hn:])
	if n.hn > 0 && n.remain > 0 {
		return errTrackerState // payload is counted only once its header is complete
	}
	if n.hn >= 2 && int(n.hn) >= headerLen(n.hdr[1]) {
		return errTrackerState // a complete header is never kept
	}
	*t = n
	return nil
}
