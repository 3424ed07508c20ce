package bench

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"

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

func (w *httpWorker) loop() {
	r := w.run
	hc := r.tgt.hostClient(r.cfg.Timeout)
	defer hc.CloseIdleConnections()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	var ck fasthttp.Cookie
	ck.SetKey(r.cfg.Cookie)

	size := r.cfg.ResourceBytes
	uri := r.tgt.url(PathResource + "?bytes=" + strconv.Itoa(size))
	var want []byte
	if size <= checkedBodyBytes {
		want = make([]byte, size)
		Pattern(want, 0)
	}
	p := newPacer(r.cfg.Rate, w.id, r.cfg.Conns)
	for {
		start, ok := r.tick(p)
		if !ok {
			return
		}
		req.Reset()
		req.SetRequestURI(uri)
		if c := w.stats.sticky.cookie; c != "" {
			req.Header.SetCookie(r.cfg.Cookie, c)
		}
		err := hc.DoDeadline(req, resp, r.deadline())
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
			r.record(opHTTP, w.id, w.stats, start, size)
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

// kindSessionEnded is the kind of a session that its node ended (409) or
// that moved to another node: not an error, stickiness accounts for it.
const kindSessionEnded = "session_ended"

// errKind names the kind of a failed operation op for the report.
func errKind(op string, err error) string {
	var ne net.Error
	var ce *websocket.CloseError
	var ae *answerError
	var cv *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cv):
		return op + "_tls_unverified" // a self-signed certificate wants --insecure
	case errors.Is(err, errSessionEnded):
		return kindSessionEnded
	case errors.As(err, &ae):
		return op + "_status_" + strconv.Itoa(ae.status)
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
