package bench

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// bigPlan is what the connections of the big scenario share.
type bigPlan struct {
	size   int64  // bytes of each upload and download
	answer string // the node's answer to a good upload: "<size> <sha256-hex>"
}

// prepareBig computes the checksum of the uploads: Pattern bytes, as the
// node computes it.
func (r *run) prepareBig() error {
	size := int64(r.cfg.BigMB) * 1_000_000
	h := sha256.New()
	if _, err := io.Copy(h, &patternReader{size: size}); err != nil {
		return fmt.Errorf("checksum of the uploads: %w", err)
	}
	r.big = bigPlan{size: size, answer: strconv.FormatInt(size, 10) + " " + hex.EncodeToString(h.Sum(nil))}
	return nil
}

// bigWorker is one keep-alive connection of the big scenario: it uploads a
// snapshot of BigMB (POST /cobrowse/upload, checked by the node's sha256
// answer) and downloads one (GET /cobrowse/resource, checked byte for byte
// against Pattern), in turn, streaming both ways. Its first answer gives
// it the sticky cookie.
type bigWorker struct {
	run   *run
	id    int
	stats *workerStats
	hc    *fasthttp.HostClient
	req   *fasthttp.Request
	resp  *fasthttp.Response
	chunk []byte // scratch for the expected bytes of a download
	buf   []byte // scratch for the received bytes of a download
}

func (w *bigWorker) loop() {
	r := w.run
	w.hc = r.tgt.hostClient(r.cfg.Timeout)
	w.hc.StreamResponseBody = true
	defer w.hc.CloseIdleConnections()
	w.req, w.resp = fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(w.req)
	defer fasthttp.ReleaseResponse(w.resp)
	w.chunk, w.buf = make([]byte, 32<<10), make([]byte, 32<<10)
	p := newPacer(r.cfg.Rate, w.id, r.cfg.Conns)
	for up := true; ; up = !up {
		start, ok := r.tick(p)
		if !ok {
			return
		}
		k := opDownload
		if up {
			k = opUpload
		}
		if fail := w.transfer(up); fail != "" {
			if fail != kindSessionEnded && r.ctx.Err() == nil {
				w.stats.fail(fail)
			}
			r.pause()
			continue
		}
		r.record(k, w.id, w.stats, start, int(r.big.size))
	}
}

// transfer uploads (up) or downloads one snapshot and checks it; it returns
// the kind of its failure, "" for none.
func (w *bigWorker) transfer(up bool) string {
	r := w.run
	req, resp := w.req, w.resp
	req.Reset()
	if up {
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI(r.tgt.url(PathUpload))
		req.SetBodyStream(&patternReader{size: r.big.size}, int(r.big.size))
	} else {
		req.SetRequestURI(r.tgt.url(PathResource + "?bytes=" + strconv.FormatInt(r.big.size, 10)))
	}
	if c := w.stats.sticky.cookie; c != "" {
		req.Header.SetCookie(r.cfg.Cookie, c)
	}
	op := map[bool]string{true: "upload", false: "download"}[up]
	if err := w.hc.DoDeadline(req, resp, r.deadlineAt(time.Now())); err != nil {
		return errKind(op, err)
	}
	defer resp.CloseBodyStream() //nolint:errcheck // the body was read or is given up
	status := resp.StatusCode()
	w.stats.observe(status, string(resp.Header.Peek(HeaderNode)), setCookieOf(&resp.Header, r.cfg.Cookie))
	switch {
	case status == fasthttp.StatusConflict:
		return kindSessionEnded
	case status != fasthttp.StatusOK:
		return op + "_status_" + strconv.Itoa(status)
	}
	body := resp.BodyStream()
	if body == nil {
		body = bytes.NewReader(resp.Body())
	}
	if up {
		answer, err := io.ReadAll(io.LimitReader(body, 256))
		switch {
		case err != nil:
			return errKind(op, err)
		case string(answer) != r.big.answer:
			return "upload_checksum"
		}
		return ""
	}
	return w.checkDownload(body)
}

// checkDownload reads body to its end and compares it with Pattern bytes.
func (w *bigWorker) checkDownload(body io.Reader) string {
	var off int64
	buf := w.buf
	for {
		n, err := io.ReadFull(body, buf)
		if n > 0 {
			Pattern(w.chunk[:n], off)
			if !bytes.Equal(buf[:n], w.chunk[:n]) {
				return "download_body"
			}
			off += int64(n)
		}
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			if off != w.run.big.size {
				return "download_short"
			}
			return ""
		case err != nil:
			return errKind("download", err)
		case off > w.run.big.size:
			return "download_long"
		}
	}
}
