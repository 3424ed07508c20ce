// Package wire is tether's HTTP/1.1 message format: it reads and checks a
// request head strictly before fasthttp parses the same bytes
// (ReadRequestHead) and turns it into the node's (NodeHead: hop-by-hop
// fields out, tether's forwarding fields in), checks an answer head as strictly and relays it to the
// client from the bytes checked, less its hop-by-hop fields
// (ReadResponseHead, AnswerHead.Relay), streams a body by its framing and
// re-emits chunked bodies canonically (CopyBody), follows WebSocket frame
// boundaries in a byte stream (FrameTracker) and computes the handshake's
// Sec-WebSocket-Accept (WSAccept); it holds the connection rules
// (ClientKeepAlive, HasToken) and tether's own short answers
// (ErrorResponse). FRAMING.md lists what it accepts beside
// fasthttp alone, and what a relayed answer head holds.
//
// It works on bufio readers and writers and byte slices only: it must never
// know sockets, deadlines, nodes, routing or logs, and it imports nothing of
// tether's. Every function here is pure enough to be fuzzed.
//
//	fr, err := wire.ReadRequestHead(br, h, maxHead, maxFields)
//	n, err := wire.CopyBody(nodeWriter, br, fr, buf, true)
//	fr, err = wire.ReadResponseHead(nbr, &answer, maxHead, isHead)
//	head = answer.Relay(head[:0], nbr, wire.ConnNone)
package wire
