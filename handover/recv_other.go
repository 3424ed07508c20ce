//go:build !linux

package handover

// recvFlags: elsewhere received descriptors are marked close-on-exec after
// they arrive (and no hand-over happens there: see PeerCred).
const recvFlags = 0
