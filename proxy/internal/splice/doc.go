// Package splice joins a client connection and a node connection after a
// 101, byte for byte, until both directions end. It has two engines behind
// one interface (Engine): plain TCP sessions run on a fixed set of epoll
// loops (NewLoops, Linux), where an idle session holds no goroutine and no
// buffer; any other session (TLS on either side, or off Linux) runs on two
// goroutines (NewGo) that wait for readability before borrowing a buffer.
// Both follow the node's WebSocket frames so that tether can write a Close
// of its own between two frames when a node dies or tether shuts down. Loop
// sessions can be handed to another process: Freeze takes them off their
// loops, Release lets this process's descriptors go, Adopt and Thaw start
// them in the process that received the descriptors and their Moved state.
//
// It moves bytes and ends sessions; it must never know HTTP heads, routing,
// the access log or the server's connection set: it reports each session's
// end once, to its Ender, and registers it with its node (Registry).
//
//	eng.Start(&splice.Session{Client: c, Node: n, WebSocket: true, Registry: node}, ender)
package splice
