package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// The idle-http scenario: plain keep-alive connections, each after one
// GET, held idle (runIdle runs it; this file has its connections).

// idleHTTPBytes is the body size of the GETs of idle-http: a small
// resource, so the answer costs the target a read and a write.
const idleHTTPBytes = 256

// idleReadBuf is the size of a worker's reader: an answer's head and its
// body fit in it.
const idleReadBuf = 4 << 10

// newNetDialers builds one dialer per source address.
func (r *idleRun) newNetDialers() []*net.Dialer {
	out := make([]*net.Dialer, r.cfg.SourceIPs)
	for i := range out {
		out[i] = &net.Dialer{Timeout: r.cfg.Timeout}
		if r.cfg.SourceIPs > 1 {
			out[i].LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}
		}
	}
	return out
}

// newRequests builds the GET of each node's cookie.
func (r *idleRun) newRequests() [][]byte {
	out := make([][]byte, len(r.cookies))
	for i, ck := range r.cookies {
		out[i] = []byte("GET " + PathResource + "?bytes=" + strconv.Itoa(idleHTTPBytes) + " HTTP/1.1\r\n" +
			"Host: " + r.tgt.addr + "\r\nUser-Agent: tether-bench\r\n" +
			"Cookie: " + r.cfg.Cookie + "=" + ck.value + "\r\n\r\n")
	}
	return out
}

// openHTTP opens connection i and GETs one resource on it; nil if it
// failed.
func (w *idleWorker) openHTTP(i int) net.Conn {
	r := w.run
	ctx, cancel := context.WithDeadline(r.ctx, r.deadline())
	defer cancel()
	c, err := r.netDialers[i%len(r.netDialers)].DialContext(ctx, "tcp", r.tgt.addr)
	if err != nil {
		w.failOp("http_dial", err)
		return nil
	}
	if !w.get(c, i, "http") {
		_ = c.Close()
		return nil
	}
	return c
}

// warmUp has Concurrency connections (at most Sessions) open at the same
// time as step 3 opens them (a GET, or a WebSocket and its echo), then
// close, before the baseline: what serving costs the target once for all
// (worker goroutines and their stacks, buffers, their pools) is then in the
// baseline, not in the growth per idle session. Its WebSockets use session
// numbers past the measured ones. It returns their counters.
func (r *idleRun) warmUp() []*workerStats {
	n := min(r.cfg.Concurrency, r.cfg.Sessions)
	stats := make([]*workerStats, n)
	var wg sync.WaitGroup
	for i := range n {
		w := &idleWorker{run: r, stats: newWorkerStats()}
		stats[i] = w.stats
		wg.Go(func() {
			if r.isHTTP() {
				if c := w.openHTTP(i); c != nil {
					_ = c.Close()
				}
			} else if c := w.open(r.cfg.Sessions + i); c != nil {
				_ = c.Close()
			}
		})
	}
	wg.Wait()
	return stats
}

// checkHTTPLoop GETs once more on each open connection it takes, then
// closes it, until none is left.
func (w *idleWorker) checkHTTPLoop() {
	r := w.run
	for {
		i := int(r.next.Add(1) - 1)
		if i >= len(r.plain) {
			return
		}
		c := r.plain[i]
		if c == nil {
			continue
		}
		if w.get(c, i, "http_check") {
			r.prog.done.Add(1)
		} else {
			r.prog.failed.Add(1)
		}
		_ = c.Close()
	}
}

// get sends connection i's GET on c and reads the whole answer, which must
// be a 200 from the node of the connection's cookie that keeps c open; op
// names the errors.
func (w *idleWorker) get(c net.Conn, i int, op string) bool {
	r := w.run
	if w.br == nil {
		w.br = bufio.NewReaderSize(c, idleReadBuf)
		w.resp = new(fasthttp.Response)
	}
	ck := r.cookies[i%len(r.cookies)]
	_ = c.SetDeadline(r.deadline())
	if _, err := c.Write(r.requests[i%len(r.cookies)]); err != nil {
		w.failOp(op+"_write", err)
		return false
	}
	w.br.Reset(c)
	defer w.br.Reset(nil) // the reader holds no connection between GETs
	w.resp.Reset()
	if err := w.resp.Read(w.br); err != nil {
		w.failOp(op+"_read", err)
		return false
	}
	_ = c.SetDeadline(time.Time{})
	node := string(w.resp.Header.Peek(HeaderNode))
	nr := w.stats.node(node)
	nr.Requests++
	status := w.resp.StatusCode()
	if status == http.StatusConflict {
		nr.Status409++
		w.stats.sticky.endedN++
	}
	if node != "" && node != ck.node {
		w.stats.sticky.violated++ // an answer without X-Node is the target's own
	}
	switch {
	case status != http.StatusOK:
		w.stats.fail(op + "_status_" + strconv.Itoa(status))
		return false
	case len(w.resp.Body()) != idleHTTPBytes:
		w.stats.fail(op + "_body")
		return false
	case w.resp.ConnectionClose() || w.br.Buffered() > 0:
		w.stats.fail(op + "_not_kept") // closed, or more than one answer
		return false
	}
	return true
}

// heapPath answers, on an admin listener with Go's profiler, after a
// collection, with the runtime's memory statistics in text.
const heapPath = "/debug/pprof/heap?gc=1&debug=1"

// maxHeapProfile bounds what readHeap reads of the answer.
const maxHeapProfile = 16 << 20

// readHeap reads the target's live Go heap (HeapAlloc after a collection)
// from its profiler. It reads twice and keeps the second: what a
// sync.Pool held (the buffers of the requests just served) survives one
// collection and goes with the next, and is no cost of an idle connection.
func (r *idleRun) readHeap() (int64, error) {
	if _, err := r.readHeapOnce(); err != nil {
		return 0, err
	}
	return r.readHeapOnce()
}

func (r *idleRun) readHeapOnce() (int64, error) {
	ctx, cancel := context.WithDeadline(r.ctx, r.deadline())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.Pprof+heapPath, nil)
	if err != nil {
		return 0, fmt.Errorf("heap of %s: %w", r.cfg.Pprof, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("heap of %s: %w", r.cfg.Pprof, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("heap of %s: status %d (is --pprof on?)", r.cfg.Pprof, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHeapProfile))
	if err != nil {
		return 0, fmt.Errorf("heap of %s: %w", r.cfg.Pprof, err)
	}
	v, ok := memStat(body, "HeapAlloc")
	if !ok {
		return 0, fmt.Errorf("heap of %s: no HeapAlloc in the profile", r.cfg.Pprof)
	}
	return v, nil
}

// memStat returns the value of a "# Name = N" line of a text heap profile.
func memStat(profile []byte, name string) (int64, bool) {
	key := []byte("# " + name + " = ")
	for line := range bytes.Lines(profile) {
		if v, ok := bytes.CutPrefix(line, key); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
