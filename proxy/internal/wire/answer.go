package wire

// A node's answer head, relayed to the client from the bytes the scan
// checked: ReadResponseHead records in an AnswerHead what the relay must
// know (status, where the status line ends, the field lines to leave out,
// the names Connection lists, the WebSocket handshake's fields), and
// Relay copies the head out of the node reader's buffer, less those lines,
// in one pass. No other parser reads the answer head, so what reaches the
// client is exactly what was checked.

import (
	"bufio"
	"bytes"
	"slices"
	"strconv"

	"github.com/valyala/fasthttp"
)

// AnswerHead is a node's answer head as ReadResponseHead checked it: one
// per exchange, reused for every answer (its slices keep their capacity up
// to maxKept entries). Between ReadResponseHead and Relay or Skip the head
// itself stays in the reader, unread.
type AnswerHead struct {
	status      int
	http10      bool
	end         int // head length, the empty line included
	fields      int // offset of the first field line (or of the empty line)
	chunkedBody bool

	cuts   []answerCut // field lines Relay may leave out, in wire order
	listed []span      // the names Connection lists, but close and keep-alive

	upgradeWS bool // Upgrade lists websocket
	accepts   int  // Sec-WebSocket-Accept fields
	acceptLen int  // length of the last one's value
	accept    [WSAcceptLen]byte
}

// answerCut is a field line that Relay may leave out or rewrite: its
// offsets in the head (the CRLF included) and what it is.
type answerCut struct {
	start, end int32
	kind       cutKind
}

type cutKind uint8

const (
	cutHop       cutKind = iota // Connection, Keep-Alive, Proxy-Connection, Upgrade, TE
	cutLength                   // Content-Length
	cutDupLength                // a repeated Content-Length (same value): never relayed
	cutTE                       // Transfer-Encoding
	cutNone      cutKind = 255  // a line Relay always copies
)

// span is an offset and a length in the head.
type span struct{ off, len int32 }

// maxKept bounds the entries the slices of an AnswerHead keep between
// answers: a head with more cut lines or Connection names gets new ones,
// so a pooled AnswerHead does not hold on to one hostile head's worth.
const maxKept = 64

// reset prepares a for the next head.
func (a *AnswerHead) reset() {
	cuts, listed := a.cuts[:0], a.listed[:0]
	if cap(cuts) > maxKept {
		cuts = nil
	}
	if cap(listed) > maxKept {
		listed = nil
	}
	*a = AnswerHead{cuts: cuts, listed: listed}
}

// Status is the answer's status code, 100 to 599.
func (a *AnswerHead) Status() int { return a.status }

// HTTP10 reports an HTTP/1.0 status line.
func (a *AnswerHead) HTTP10() bool { return a.http10 }

// UpgradeWebSocket reports whether an Upgrade field lists websocket.
func (a *AnswerHead) UpgradeWebSocket() bool { return a.upgradeWS }

// WebSocketAccept returns the value of the head's Sec-WebSocket-Accept,
// without surrounding whitespace, when it carries exactly one of
// WSAcceptLen bytes; ok is false otherwise. The slice is a's own.
func (a *AnswerHead) WebSocketAccept() (v []byte, ok bool) {
	if a.accepts != 1 || a.acceptLen != WSAcceptLen {
		return nil, false
	}
	return a.accept[:], true
}

// answerField records what Relay and the WebSocket check need of one field
// line of an answer, which splitField has checked and split into name and
// value: line (no CRLF) starts at offset start of the head, and name and v
// are slices of it. It runs before field, which may still refuse the line.
func (s *headScan) answerField(start int, line, name, v []byte) {
	a := s.ans
	if a.fields == 0 {
		a.fields = start
	}
	kind := cutNone
	switch len(name) {
	case len("te"):
		if headEqualFold(name, "te") {
			kind = cutHop
		}
	case len("upgrade"):
		if headEqualFold(name, "upgrade") {
			kind = cutHop
			for rest := v; len(rest) > 0; {
				var e []byte
				e, rest = NextElement(rest)
				a.upgradeWS = a.upgradeWS || headEqualFold(e, "websocket")
			}
		}
	case len("connection"): // and "keep-alive"
		switch {
		case headEqualFold(name, "connection"):
			kind = cutHop
			for rest := v; len(rest) > 0; {
				var e []byte
				e, rest = NextElement(rest)
				if len(e) > 0 && !headEqualFold(e, "close") && !headEqualFold(e, "keep-alive") {
					off := start + cap(line) - cap(e) // e is a slice of line
					a.listed = append(a.listed, span{int32(off), int32(len(e))})
				}
			}
		case headEqualFold(name, "keep-alive"):
			kind = cutHop
		}
	case len("content-length"):
		if headEqualFold(name, "content-length") {
			kind = cutLength
			if s.cls > 0 { // field counts this one after
				kind = cutDupLength
			}
		}
	case len("proxy-connection"):
		if headEqualFold(name, "proxy-connection") {
			kind = cutHop
		}
	case len("transfer-encoding"):
		if headEqualFold(name, "transfer-encoding") {
			kind = cutTE
		}
	case len("sec-websocket-accept"):
		if headEqualFold(name, "sec-websocket-accept") {
			a.accepts++
			a.acceptLen = len(v)
			copy(a.accept[:], v)
		}
	}
	if kind != cutNone {
		a.cuts = append(a.cuts, answerCut{int32(start), int32(start + len(line) + 2), kind})
	}
}

// ConnField is the Connection field Relay ends a head with.
type ConnField uint8

const (
	ConnNone      ConnField = iota // none: an interim answer, a 101, a kept HTTP/1.1 client
	ConnClose                      // "Connection: close": the client connection closes after the answer
	ConnKeepAlive                  // "Connection: keep-alive": a kept HTTP/1.0 client
)

// Relay appends to dst the head to send the client for the answer head br
// holds at its start (ReadResponseHead left it there), then discards the
// head from br. The head is copied as the node sent it, field names and
// values byte for byte, except that:
//   - the status line is "HTTP/1.1 CODE REASON", with the node's reason,
//     or the standard one when the node sent none;
//   - a repeated Content-Length line (same value: the scan refuses
//     others) is left out;
//   - but in a 101, which completes a WebSocket handshake, every other
//     field stays (its Connection and Upgrade are the handshake);
//   - elsewhere Connection, Keep-Alive, Proxy-Connection, Upgrade and TE
//     are left out (RFC 9110 section 7.6.1), and so is every field a
//     Connection value names but close and keep-alive, wherever it is,
//     except Content-Length and Transfer-Encoding: the client must read
//     the framing tether reads;
//   - an answer with a chunked body loses its Content-Length lines and
//     gets "Transfer-Encoding: chunked" in place of its own;
//   - conn adds a Connection field last.
func (a *AnswerHead) Relay(dst []byte, br *bufio.Reader, conn ConnField) []byte {
	head, _ := br.Peek(a.end) // buffered whole: cannot fail
	dst = a.appendRelay(dst, head, conn)
	br.Discard(a.end)
	return dst
}

// Skip discards the answer head br holds at its start, relaying nothing
// (a 100 Continue: tether sent its own).
func (a *AnswerHead) Skip(br *bufio.Reader) {
	br.Discard(a.end)
}

// The bytes Relay writes of its own.
var (
	tokStatusStart = []byte("HTTP/1.1 ")
	tokTEChunked   = []byte("Transfer-Encoding: chunked\r\n")
	tokConnClose   = []byte("Connection: close\r\n")
	tokConnKeep    = []byte("Connection: keep-alive\r\n")
)

// appendRelay is Relay on the head's bytes.
func (a *AnswerHead) appendRelay(dst, head []byte, conn ConnField) []byte {
	dst = append(dst, tokStatusStart...)
	line := head[:a.fields-2] // HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) > len("HTTP/1.1 200 ") {
		dst = append(dst, line[9:]...)
	} else {
		dst = strconv.AppendInt(dst, int64(a.status), 10)
		dst = append(dst, ' ')
		dst = append(dst, fasthttp.StatusMessage(a.status)...)
	}
	dst = append(dst, tokCRLF...)
	if a.status != 101 {
		a.sortListed(head)
	}
	from := a.fields // start of the lines not copied yet
	for _, c := range a.cuts {
		keep := a.keeps(c.kind)
		if keep && len(a.listed) == 0 {
			continue // copied with the lines around it
		}
		dst = a.appendLines(dst, head, from, int(c.start))
		switch {
		case keep: // whatever Connection names: framing stays
			dst = append(dst, head[c.start:c.end]...)
		case c.kind == cutTE:
			dst = append(dst, tokTEChunked...)
		}
		from = int(c.end)
	}
	dst = a.appendLines(dst, head, from, a.end-2)
	switch conn {
	case ConnClose:
		dst = append(dst, tokConnClose...)
	case ConnKeepAlive:
		dst = append(dst, tokConnKeep...)
	}
	return append(dst, tokCRLF...)
}

// keeps reports whether Relay copies a cut line of this kind.
func (a *AnswerHead) keeps(k cutKind) bool {
	switch {
	case k == cutDupLength:
		return false
	case a.status == 101:
		return true
	case k == cutHop:
		return false
	}
	return !a.chunkedBody // a Content-Length or Transfer-Encoding line
}

// appendLines appends the whole field lines head[from:to], less those whose
// name Connection lists (a 101 keeps them).
func (a *AnswerHead) appendLines(dst, head []byte, from, to int) []byte {
	if len(a.listed) == 0 || a.status == 101 {
		return append(dst, head[from:to]...)
	}
	run := from // start of the lines kept and not copied yet
	for from < to {
		end := from + bytes.IndexByte(head[from:to], '\n') + 1
		if a.isListed(head, head[from:from+bytes.IndexByte(head[from:end], ':')]) {
			dst = append(dst, head[run:from]...)
			run = end
		}
		from = end
	}
	return append(dst, head[run:to]...)
}

// isListed reports whether Connection names name. Beyond a few names it
// searches them sorted (sortListed), so that a head of many lines and many
// names costs n log n, not n².
func (a *AnswerHead) isListed(head, name []byte) bool {
	if len(a.listed) <= fewListed {
		for _, l := range a.listed {
			if int(l.len) == len(name) && compareFold(head[l.off:l.off+l.len], name) == 0 {
				return true
			}
		}
		return false
	}
	_, found := slices.BinarySearchFunc(a.listed, name, func(l span, name []byte) int {
		return compareFold(head[l.off:l.off+l.len], name)
	})
	return found
}

// fewListed is how many Connection names isListed searches one by one.
const fewListed = 8

// sortListed sorts the Connection names, ignoring case, when isListed is
// to search them sorted.
func (a *AnswerHead) sortListed(head []byte) {
	if len(a.listed) > fewListed {
		slices.SortFunc(a.listed, func(x, y span) int {
			return compareFold(head[x.off:x.off+x.len], head[y.off:y.off+y.len])
		})
	}
}

// compareFold compares a and b as bytes.Compare does, ignoring ASCII case.
func compareFold(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return int(x) - int(y)
		}
	}
	return len(a) - len(b)
}
