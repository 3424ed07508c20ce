package logwriter

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the flusher and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWriterFlushes: lines stay buffered until the interval passes, and
// Close writes out what is left.
func TestWriterFlushes(t *testing.T) {
	var out lockedBuffer
	w := New(&out, 10*time.Millisecond)
	w.Write([]byte("one\n"))
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != "one\n" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := out.String(); got != "one\n" {
		t.Fatalf("after the interval: %q, want the line", got)
	}

	var out2 lockedBuffer
	w2 := New(&out2, time.Hour)
	w2.Write([]byte("two\n"))
	if got := out2.String(); got != "" {
		t.Fatalf("before any flush: %q, want nothing written", got)
	}
	if err := w2.Close(); err != nil || out2.String() != "two\n" {
		t.Fatalf("after Close: %q, %v; want the line", out2.String(), err)
	}
	w.Close()
}
