package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/tether-lb/tether/bench"
)

// rssGrowthLimit bounds how much tether's resident memory may grow across
// the big transfers of TestBigBodiesStream. Bodies stream through 32 KiB
// pooled buffers, so a streaming proxy grows by well under a megabyte
// (plus runtime noise). A proxy that held a whole 12 MB upload or a whole
// 20 MB download in memory would grow by at least the 12 MB of the
// smallest body: the limit sits just below that.
const rssGrowthLimit = 12 << 20

// randomBody returns n deterministic pseudo-random bytes and their
// "<n> <sha256hex>" as /cobrowse/upload answers it.
func randomBody(n int, seed uint64) ([]byte, string) {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	sum := sha256.Sum256(b)
	return b, strconv.Itoa(n) + " " + hex.EncodeToString(sum[:])
}

// chunked frames body as chunks of varying sizes, up to 100 000 bytes.
func chunked(body []byte, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	var out bytes.Buffer
	for len(body) > 0 {
		k := min(len(body), 1+r.IntN(100000))
		fmt.Fprintf(&out, "%x\r\n", k)
		out.Write(body[:k])
		out.WriteString("\r\n")
		body = body[k:]
	}
	out.WriteString("0\r\n\r\n")
	return out.Bytes()
}

// upload POSTs body to /cobrowse/upload with Content-Length, or chunked,
// writing while it waits for the answer, and checks the node's checksum.
func upload(t *testing.T, addr string, body []byte, want string, useChunked bool) {
	t.Helper()
	r, werr := post(t, addr, body, useChunked)
	if werr != nil {
		t.Fatalf("write upload: %v", werr)
	}
	if r.status != 200 || string(r.body) != want {
		t.Fatalf("upload of %d bytes (chunked %v): status %d body %q, want 200 %q", len(body), useChunked, r.status, r.body, want)
	}
}

// post sends body to /cobrowse/upload and returns the answer and how the
// writing of the request ended.
func post(t *testing.T, addr string, body []byte, useChunked bool) (*response, error) {
	t.Helper()
	c := dialRaw(t, addr).withDeadline(30 * time.Second)
	head := "POST /cobrowse/upload HTTP/1.1\r\nHost: example.test\r\nContent-Type: application/octet-stream\r\n"
	payload := body
	if useChunked {
		head += "Transfer-Encoding: chunked\r\n\r\n"
		payload = chunked(body, uint64(len(body)))
	} else {
		head += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	}
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, io.MultiReader(bytes.NewReader([]byte(head)), bytes.NewReader(payload)))
		werr <- err
	}()
	r := c.readResponse(t, false)
	c.Close() // ends a write still going on
	return r, <-werr
}

// TestMaxBodyBytes: with --max-body-bytes, bodies up to the limit pass; a
// Content-Length past it is answered 413 before any node is asked; a chunked
// body is cut at the chunk that passes it and answered 413, so the node
// never gets a complete upload.
func TestMaxBodyBytes(t *testing.T) {
	t.Parallel()
	n := startNode(t, node1, 0)
	const limit = 300_000
	tt := startTether(t, []*testNode{n}, append(healthOff, "--max-body-bytes", strconv.Itoa(limit))...)
	body, want := randomBody(limit, 7)
	upload(t, tt.addr, body, want, false)
	upload(t, tt.addr, body, want, true)
	big, _ := randomBody(3*limit, 8)
	for _, useChunked := range []bool{false, true} {
		r, _ := post(t, tt.addr, big, useChunked) // tether may close before it is all written
		if r.status != 413 {
			t.Fatalf("%d bytes (chunked %v) over a limit of %d: status %d %q, want 413", len(big), useChunked, limit, r.status, r.body)
		}
	}
	lines := tt.waitAccess(t, 2, 3*time.Second, func(l map[string]any) bool { return l["status"] == 413.0 })
	routed := 0
	for _, l := range lines {
		if _, ok := l["node"]; ok {
			routed++
			if l["bytes_in"].(float64) > limit {
				t.Errorf("a refused body reached its node past the limit: %v", l)
			}
		}
	}
	if routed != 1 {
		t.Errorf("%d of the 413s reached a node, want 1 (the chunked one, cut short): %v", routed, lines)
	}
	if got := tt.accessLines(t); len(got) != 4 {
		t.Errorf("%d access lines, want 4 (two uploads, two refusals)", len(got))
	}
}

// download GETs n bytes of /cobrowse/resource and checks every byte.
func download(t *testing.T, addr string, n int, useChunked bool) {
	t.Helper()
	c := dialRaw(t, addr).withDeadline(30 * time.Second)
	q := "/cobrowse/resource?bytes=" + strconv.Itoa(n)
	if useChunked {
		q += "&chunked=1"
	}
	r := c.do(t, get(q, ""))
	if r.status != 200 {
		t.Fatalf("GET %s: status %d", q, r.status)
	}
	if useChunked != (r.get("Transfer-Encoding") == "chunked") {
		t.Errorf("GET %s: Transfer-Encoding %q, Content-Length %q", q, r.get("Transfer-Encoding"), r.get("Content-Length"))
	}
	if len(r.body) != n {
		t.Fatalf("GET %s: %d body bytes, want %d", q, len(r.body), n)
	}
	want := make([]byte, n)
	bench.Pattern(want, 0)
	if !bytes.Equal(r.body, want) {
		i := 0
		for i < n && r.body[i] == want[i] {
			i++
		}
		t.Fatalf("GET %s: body differs from byte %d on", q, i)
	}
	// The connection is still usable after the body.
	if r := c.do(t, get("/cobrowse/resource?bytes=3", "")); string(r.body) != "012" {
		t.Fatalf("request after the download: status %d body %q", r.status, r.body)
	}
}

// TestBigBodiesStream moves 12 MB uploads and 20 MB downloads through
// tether in both framings, checks them byte for byte, and checks that
// tether's resident memory does not grow by a body's size.
func TestBigBodiesStream(t *testing.T) {
	// Not parallel: it runs alone, before the parallel tests, so that the
	// machine is not also busy with them.
	n := startNode(t, node1, 0)
	tt := startTether(t, []*testNode{n}, healthOff...)

	// Warm up every path first, so that the baseline holds tether's
	// buffers, pools and goroutine stacks.
	small, smallSum := randomBody(1<<20, 1)
	upload(t, tt.addr, small, smallSum, false)
	upload(t, tt.addr, small, smallSum, true)
	download(t, tt.addr, 1<<20, false)
	download(t, tt.addr, 1<<20, true)
	base := rssBytes(t, tt.cmd.Process.Pid)

	big, bigSum := randomBody(12<<20, 2)
	t.Run("upload 12 MB Content-Length", func(t *testing.T) { upload(t, tt.addr, big, bigSum, false) })
	t.Run("upload 12 MB chunked", func(t *testing.T) { upload(t, tt.addr, big, bigSum, true) })
	t.Run("download 20 MB Content-Length", func(t *testing.T) { download(t, tt.addr, 20<<20, false) })
	t.Run("download 20 MB chunked", func(t *testing.T) { download(t, tt.addr, 20<<20, true) })

	after := rssBytes(t, tt.cmd.Process.Pid)
	t.Logf("tether RSS %d KiB before the big transfers, %d KiB after", base>>10, after>>10)
	if after-base >= rssGrowthLimit {
		t.Fatalf("tether's RSS grew by %d KiB across the big transfers, want less than %d KiB: bodies must stream", (after-base)>>10, rssGrowthLimit>>10)
	}
}

// TestExpectContinue sends an upload head with Expect: 100-continue and
// holds the body until tether answers 100 Continue; then the final answer
// follows.
func TestExpectContinue(t *testing.T) {
	t.Parallel()
	n := startNode(t, node1, 0)
	tt := startTether(t, []*testNode{n}, healthOff...)
	body, want := randomBody(100000, 3)

	c := dialRaw(t, tt.addr).withDeadline(5 * time.Second)
	c.write(t, "POST /cobrowse/upload HTTP/1.1\r\nHost: example.test\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
	if r := c.readResponse(t, false); r.status != 100 {
		t.Fatalf("first answer status %d, want 100 Continue", r.status)
	}
	c.write(t, string(body))
	if r := c.readResponse(t, false); r.status != 200 || string(r.body) != want {
		t.Fatalf("final answer: status %d body %q, want 200 %q", r.status, r.body, want)
	}
	// The connection goes on.
	if r := c.do(t, get("/cobrowse/resource?bytes=4", "")); r.status != 200 || string(r.body) != "0123" {
		t.Fatalf("next request: status %d body %q", r.status, r.body)
	}
}
