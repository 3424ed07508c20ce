package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium runs headless Chromium with the flags this machine needs and
// returns its standard output.
func chromium(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: install Debian's chromium package (.ci/run does)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-quic", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, tail(stderr.String(), 2000))
	}
	return string(out)
}

// browse opens url in headless Chromium, driven over the DevTools protocol
// (a pipe, no port), waits until the JavaScript expression ready is true, and
// returns the page's HTML. It fails the test after 30 s with the page as it
// was: pages that finish on a WebSocket or a timer are waited for, not
// sampled at the load event.
func browse(t *testing.T, url, ready string, flags ...chromedp.ExecAllocatorOption) string {
	t.Helper()
	ctx := openPage(t, url, flags...)
	return waitPage(t, ctx, url, ready)
}

// openPage starts headless Chromium (stopped at the test's end) and loads
// url; the returned context drives that page for 60 s at most.
func openPage(t *testing.T, url string, flags ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: install Debian's chromium package (.ci/run does)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-quic", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), append(opts, flags...)...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTime(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("chromium: load %s: %v", url, err)
	}
	return ctx
}

// waitPage waits up to 30 s until the JavaScript expression ready holds on
// the page ctx drives, and returns the page's HTML (failing the test with
// it if ready never held).
func waitPage(t *testing.T, ctx context.Context, url, ready string) string {
	t.Helper()
	_, waitErr := chromedp.Run(ctx, chromedp.Poll[bool](ready,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	html, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.documentElement.outerHTML"))
	if err != nil {
		t.Fatalf("chromium: read the page %s: %v", url, err)
	}
	if waitErr != nil {
		t.Fatalf("chromium: %s never held on %s: %v\n%s", ready, url, waitErr, tail(html, 2000))
	}
	return html
}

// TestStatusPageInBrowser loads the HTML status page in headless Chromium:
// each node has its row with the right state, and the live script filled in
// requests per second. The screenshot goes to $TETHER_DOCS_DIR (the
// repository's docs/) when set.
func TestStatusPageInBrowser(t *testing.T) {
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tt := startTether(t, []*testNode{n1, n2})
	admin := "http://" + tt.adminAddr(t)
	n2.SetHealthy(false)
	// A connection per try: a request in flight when node 2 goes down is
	// answered 502 and its connection closed.
	if !waitFor(3*time.Second, func() bool {
		c := dialRaw(t, tt.addr)
		defer c.Close()
		return c.do(t, get("/cobrowse/x", "Cookie: gcbSessionServer="+node2+"\r\n")).get("X-Node") == node1
	}) {
		t.Fatal("node 2 never went down")
	}
	openSessions(t, tt.addr, node1, 2)
	// Traffic while the page watches, so that req/s is not zero.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc := mustDial(t, tt.addr)
		if nc == nil {
			return
		}
		lc := newRawConnPlain(nc)
		defer lc.Close()
		for {
			select {
			case <-stop:
				return
			default:
			}
			lc.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := lc.Write([]byte(get("/cobrowse/busy", "Cookie: gcbSessionServer="+node1+"\r\n"))); err != nil {
				return
			}
			if _, err := parseResponse(lc.br, false); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	defer func() { close(stop); <-done }()

	page := admin + "/status?format=html"
	// Ready once both rows are there and the live script has filled a rate.
	dom := browse(t, page, fmt.Sprintf(`document.getElementById("node-%s") !== null && `+
		`document.getElementById("node-%s") !== null && `+
		`/[0-9]/.test(document.querySelector("#node-%s .rps")?.textContent ?? "")`, node1, node2, node1))
	for name, state := range map[string]string{node1: "up", node2: "down"} {
		re := regexp.MustCompile(`<tr id="node-` + name + `" data-state="` + state + `"`)
		if !re.MatchString(dom) {
			t.Errorf("no %s row in state %s in the page:\n%s", name, state, tail(dom, 3000))
		}
	}
	rps := regexp.MustCompile(`id="node-` + node1 + `"[^\n]*?class="num rps">([0-9.]+)<`).FindStringSubmatch(dom)
	if rps == nil {
		t.Errorf("the live script did not fill req/s for %s:\n%s", node1, tail(dom, 3000))
	}

	dir := os.Getenv("TETHER_DOCS_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	shot := filepath.Join(dir, "status.png")
	chromium(t, "--virtual-time-budget=5000", "--hide-scrollbars", "--window-size=1280,330", "--screenshot="+shot, page)
	if st, err := os.Stat(shot); err != nil || st.Size() < 5000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	if !strings.HasPrefix(dom, "<html") && !strings.Contains(dom, "<html") {
		t.Fatal("no page dumped")
	}
}

// mustDial connects to addr or fails the test.
func mustDial(t *testing.T, addr string) net.Conn {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Error(err)
		return nil
	}
	return c
}

// TestBrowserWSSThroughTether: headless Chromium loads a co-browse page over
// https through tether (self-signed certificate), the page opens a wss
// WebSocket that carries the cookie the node set, and the echo comes back.
// The access log shows the WebSocket went to the page's node by cookie.
func TestBrowserWSSThroughTether(t *testing.T) {
	n1, n2 := startNode(t, node1, 0), startNode(t, node2, 0)
	tlsAddr := freeAddr(t)
	tt := startTether(t, []*testNode{n1, n2}, append(healthOff, "--tls-listen", tlsAddr, "--tls-self-signed")...)
	if !strings.Contains(tt.stderr.String(), `"sha256":`) {
		t.Errorf("the self-signed certificate's fingerprint was not logged")
	}
	dom := browse(t, "https://localhost:"+strings.Split(tlsAddr, ":")[1]+"/cobrowse/page",
		`document.getElementById("result")?.textContent !== "pending"`,
		chromedp.Flag("ignore-certificate-errors", true))
	m := regexp.MustCompile(`<span id="node">([^<]+)</span>`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no page in the DOM:\n%s", tail(dom, 2000))
	}
	if !strings.Contains(dom, `<p id="result">echo: hello from the browser</p>`) {
		t.Fatalf("the page's wss echo did not complete:\n%s", tail(dom, 2000))
	}
	lines := tt.waitAccess(t, 1, 5*time.Second, func(l map[string]any) bool { return l["ws"] == true })
	if l := lines[0]; l["node"] != m[1] || l["why"] != "cookie" {
		t.Fatalf("wss went to %v (why %v), want the page's node %s by cookie", l["node"], l["why"], m[1])
	}
}

// TestStatusPageAfterReload keeps the HTML status page open in headless
// Chromium across a reload that changes a node's URL: the live script gives
// the draining copy and its successor a row each (ids NAME and NAME@1), and
// writes each copy's figures into its own row.
func TestStatusPageAfterReload(t *testing.T) {
	n1, n2, n2new := startNode(t, node1, 0), startNode(t, node2, 0), startNode(t, node2, 0)
	path := filepath.Join(t.TempDir(), "tether.yaml")
	writeConfig(t, path, []*testNode{n1, n2}, "drain-timeout: 30s\nhealth-interval: 1h\n")
	tt := startTether(t, nil, "--config", path)
	page := "http://" + tt.adminAddr(t) + "/status?format=html"
	ctx := openPage(t, page)
	row := func(id, cell string) string {
		return fmt.Sprintf(`document.getElementById(%q)?.%s`, "node-"+id, cell)
	}
	waitPage(t, ctx, page, row(node2, `cells[1].textContent === "`+n2.addr+`"`))

	writeConfig(t, path, []*testNode{n1, n2new}, "drain-timeout: 30s\nhealth-interval: 1h\n")
	if err := tt.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitPage(t, ctx, page, strings.Join([]string{
		row(node2+"@1", `cells[1].textContent === "`+n2new.addr+`"`),
		row(node2+"@1", `querySelector(".state").textContent === "up"`),
		row(node2, `cells[1].textContent === "`+n2.addr+`"`),
		row(node2, `querySelector(".state").textContent === "draining (removed)"`),
		row(node1, `querySelector(".state").textContent === "up"`),
		`document.querySelectorAll("#nodes tr").length === 3`,
	}, " && "))
}
