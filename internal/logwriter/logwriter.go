package logwriter

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// Writer is a buffered, mutex-guarded writer for the access log: zerolog
// hands it one whole line per Write, and it reaches the output when the
// buffer fills or at the latest after the flush interval, so a busy proxy
// does not make one write system call per request. Nothing is dropped.
type Writer struct {
	mu  sync.Mutex // guards w
	w   *bufio.Writer
	out io.Writer

	interval time.Duration
	stop     chan struct{}
	wg       sync.WaitGroup
}

// New buffers writes to out (64 KiB) and flushes them every
// interval (zero means 200ms) until Close.
func New(out io.Writer, interval time.Duration) *Writer {
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	w := &Writer{
		w:        bufio.NewWriterSize(out, 64<<10),
		out:      out,
		interval: interval,
		stop:     make(chan struct{}),
	}
	w.wg.Go(w.flushLoop)
	return w
}

// Write writes one log line.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	n, err := w.w.Write(p)
	w.mu.Unlock()
	return n, err
}

// Flush writes out what is buffered.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Flush()
}

// Close stops the flusher and flushes what is left.
func (w *Writer) Close() error {
	close(w.stop)
	w.wg.Wait()
	return w.Flush()
}

// flushLoop flushes the buffer every interval until Close.
func (w *Writer) flushLoop() {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.Flush()
		}
	}
}

var _ io.Writer = (*Writer)(nil)
