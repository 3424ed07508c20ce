package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

// checkedBodyBytes is the largest resource whose bytes a worker compares
// with the pattern; larger ones are checked by length only.
const checkedBodyBytes = 64 << 10

// httpWorker is one keep-alive connection of the http scenario: it GETs
// /cobrowse/resource in a closed loop, carrying the sticky cookie of its
// first answer.
type httpWorker struct {
	run   *run
	id    int
	stats *workerStats
}

func newHostClient(r *run) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:            r.addr,
		Name:            "tether-bench",
		MaxConns:        1,
		ReadBufferSize:  16 << 10,
		WriteBufferSize: 16 << 10,
		ReadTimeout:     r.cfg.Timeout,
		WriteTimeout:    r.cfg.Timeout,
		// No silent retries: every failure the target causes is counted.
		MaxIdemponentCallAttempts: 1,
	}
}

func (w *httpWorker) loop() {
	r := w.run
	hc := newHostClient(r)
	defer hc.CloseIdleConnections()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	var ck fasthttp.Cookie
	ck.SetKey(r.cfg.Cookie)

	size := r.cfg.ResourceBytes
	uri := "http://" + r.addr + PathResource + "?bytes=" + strconv.Itoa(size)
	var want []byte
	if size <= checkedBodyBytes {
		want = make([]byte, size)
		Pattern(want, 0)
	}
	for r.running() {
		req.Reset()
		req.SetRequestURI(uri)
		if c := w.stats.sticky.cookie; c != "" {
			req.Header.SetCookie(r.cfg.Cookie, c)
		}
		start := time.Now()
		err := hc.DoDeadline(req, resp, r.deadline())
		took := time.Since(start)
		if err != nil {
			if r.ctx.Err() == nil {
				w.stats.fail(errKind("http", err))
			}
			r.pause()
			continue
		}
		status := resp.StatusCode()
		setCookie := ""
		if resp.Header.Cookie(&ck) {
			setCookie = string(ck.Value())
		}
		w.stats.observe(status, string(resp.Header.Peek(HeaderNode)), setCookie)
		body := resp.Body()
		switch {
		case status == fasthttp.StatusOK && len(body) == size && (want == nil || bytes.Equal(body, want)):
			r.httpLat.record(w.id, took)
			w.stats.httpOps++
			w.stats.httpBytes += int64(size)
		case status == fasthttp.StatusOK:
			w.stats.fail("http_body")
		case status == fasthttp.StatusConflict:
			// The session ended; observe counted it and took the new cookie.
		default:
			w.stats.fail("http_status_" + strconv.Itoa(status))
			r.pause()
		}
	}
}

// errKind names the kind of a failed operation op for the report.
func errKind(op string, err error) string {
	var ne net.Error
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		return fmt.Sprintf("%s_close_%d", op, ce.Code)
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return op + "_timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return op + "_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, fasthttp.ErrConnectionClosed):
		return op + "_closed"
	}
	return op + "_error"
}
