package splice

import "time"

// Moved is a loop session's state for a hand-over to another process: all of
// it but its two descriptors. It encodes as JSON.
type Moved struct {
	WebSocket    bool          `json:"ws,omitempty"`
	Tracker      []byte        `json:"tracker,omitempty"`   // wire.FrameTracker state (node→client frame position), opaque
	ToNode       int64         `json:"to_node"`             // bytes written to the node so far
	ToClient     int64         `json:"to_client"`           // bytes written to the client so far
	PendUp       []byte        `json:"pend_up,omitempty"`   // client bytes read, not yet written to the node
	PendDown     []byte        `json:"pend_down,omitempty"` // node bytes read, not yet written to the client
	IdleTimeout  time.Duration `json:"idle_timeout,omitempty"`
	WriteTimeout time.Duration `json:"write_timeout,omitempty"`
	Quiet        time.Duration `json:"quiet,omitempty"` // since a byte last moved either way
}
