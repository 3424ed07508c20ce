package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is the outcome of RunLoad. Each operation's figures are nil when
// the scenario has none of them.
type Report struct {
	Target   string
	Scenario string
	Elapsed  time.Duration
	// Rate is the open loop's operations a second per connection or
	// session; 0 for a closed loop.
	Rate float64
	// HTTP: requests answered 200 with the whole body, latency from send
	// to the last body byte.
	HTTP *OpReport
	// WS: messages relayed customer → agent (cobrowse) or echoed (ws-echo),
	// latency from send to receipt.
	WS *OpReport
	// Poll: messages relayed customer → agent over long polls.
	Poll *OpReport
	// Snapshot: the DOM snapshots among the messages, apart.
	Snapshot *OpReport
	// Upload and Download: the transfers of big, latency of the whole.
	Upload, Download *OpReport
	// Handshake: new TLS connections, each with one GET; latency from the
	// connect to the answer's last byte.
	Handshake *OpReport
	// TLS is what the first TLS connection negotiated; nil for plain.
	TLS *TLSInfo
	// Idle is what the idle scenario measured (nil for the others).
	Idle *IdleReport
	// Errors counts failed operations by kind, e.g. "http_timeout",
	// "http_status_502", "ws_read_close_1012", "ws_lost".
	Errors map[string]int64
	// StickyViolations counts answers from the wrong node (see stickiness).
	StickyViolations int64
	// SessionsEnded counts 409 answers: sessions a node did not own.
	SessionsEnded int64
	// Reconnect is how long the clients that failed were without service
	// (see load_reconnect.go); nil when none failed.
	Reconnect *ReconnectReport
	// Nodes summarizes the answers per X-Node value, sorted by name; "-"
	// holds the answers without X-Node.
	Nodes []NodeReport
}

// opField is the field of rep holding kind k.
func (r *Report) opField(k opKind) **OpReport {
	return [numOps]**OpReport{&r.HTTP, &r.WS, &r.Poll, &r.Snapshot, &r.Upload, &r.Download, &r.Handshake}[k]
}

// namedOp is an operation's figures with its name in reports.
type namedOp struct {
	name string
	*OpReport
}

// ops lists the figures of the run's operations, in report order.
func (r *Report) ops() []namedOp {
	var out []namedOp
	for k := range numOps {
		if op := *r.opField(k); op != nil {
			out = append(out, namedOp{opNames[k], op})
		}
	}
	return out
}

// OpReport is the load of one kind of operation.
type OpReport struct {
	Ops       int64
	Bytes     int64
	PerSecond float64
	Latency   LatencySummary
	// Timeline is the latency over the run, an interval at a time (a
	// second, wider for runs over ten minutes).
	Timeline []TimelinePoint
	hist     *hdrhistogram.Histogram // all latencies, for the percentile plot
}

// TLSInfo is what a TLS connection to the target negotiated.
type TLSInfo struct {
	Version string `json:"version"` // e.g. "TLS 1.3"
	Cipher  string `json:"cipher"`  // e.g. "TLS_AES_128_GCM_SHA256"
	Group   string `json:"group"`   // the key exchange, e.g. "X25519"
	KeyType string `json:"key"`     // the server certificate's key, e.g. "ECDSA P-256" or "RSA-2048"
	Resumed bool   `json:"resumed"` // a resumed session (never, as the load's clients keep none)
}

// String is i for people: "ECDSA P-256, TLS 1.3, TLS_AES_128_GCM_SHA256, X25519".
func (i *TLSInfo) String() string {
	return i.KeyType + ", " + i.Version + ", " + i.Cipher + ", " + i.Group
}

// NodeReport is what the clients saw of one node.
type NodeReport struct {
	Node       string
	Requests   int64 // HTTP answers, WebSocket handshakes included
	Status409  int64 // of which 409: session ended
	WSSessions int64 // sessions whose two WebSockets opened on this node
	WSMessages int64 // messages relayed by this node
}

func (n *NodeReport) add(o *NodeReport) {
	n.Requests += o.Requests
	n.Status409 += o.Status409
	n.WSSessions += o.WSSessions
	n.WSMessages += o.WSMessages
}

func sortedNodes(m map[string]*NodeReport) []NodeReport {
	out := make([]NodeReport, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		out = append(out, *m[name])
	}
	return out
}

// ErrorCount is the sum of Errors.
func (r *Report) ErrorCount() int64 { return sumCounts(r.Errors) }

// writeCounts prints the counts of m, a line each in the order of the
// keys, indented.
func writeCounts(b *strings.Builder, m map[string]int64) {
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(tw, "  %s\t%d\t\n", k, m[k])
	}
	tw.Flush()
}

// sumCounts is the sum of the counts of m.
func sumCounts(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// Failed reports whether the run saw errors or sticky violations.
func (r *Report) Failed() bool {
	return r.ErrorCount() > 0 || r.StickyViolations > 0
}

// WriteText prints the report as tables for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	loop := "closed loop"
	if r.Rate > 0 {
		loop = fmt.Sprintf("open loop at %g/s per connection or session, latency from the scheduled send", r.Rate)
	}
	fmt.Fprintf(&b, "load %s -> %s for %.2fs, %s\n\n", r.Scenario, r.Target, r.Elapsed.Seconds(), loop)
	if r.TLS != nil {
		fmt.Fprintf(&b, "tls: %s\n\n", r.TLS)
	}

	if r.Idle != nil {
		r.Idle.writeText(&b)
	} else {
		r.writeOps(&b)
	}

	fmt.Fprintf(&b, "\nsessions ended %d, sticky violations %d, errors %d\n", r.SessionsEnded, r.StickyViolations, r.ErrorCount())
	writeCounts(&b, r.Errors)
	if r.Reconnect != nil {
		r.Reconnect.writeText(&b)
	}

	if len(r.Nodes) > 0 {
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "node\trequests\t409s\tsessions\tmessages\t")
		for _, n := range r.Nodes {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", n.Node, n.Requests, n.Status409, n.WSSessions, n.WSMessages)
		}
		tw.Flush()
	}
	if r.Failed() {
		b.WriteString("\nFAILED: errors or sticky violations\n")
	} else {
		b.WriteString("\nOK\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeOps prints the table of the operations.
func (r *Report) writeOps(b *strings.Builder) {
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tops\tops/s\tMB/s\tp50\tp90\tp99\tp99.9\tmax\t")
	for _, op := range r.ops() {
		l := op.Latency
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%s\t%s\t%s\t%s\t%s\t\n", op.name, op.Ops, op.PerSecond,
			float64(op.Bytes)/r.Elapsed.Seconds()/1e6,
			fmtLatency(l.P50), fmtLatency(l.P90), fmtLatency(l.P99), fmtLatency(l.P999), fmtLatency(l.Max))
	}
	tw.Flush()
	for _, op := range []namedOp{{"upload", r.Upload}, {"download", r.Download}} {
		if op.OpReport != nil && op.Latency.P50 > 0 {
			fmt.Fprintf(b, "%s: %.1f MB/s per transfer (median), %d MB each\n", op.name,
				float64(op.Bytes)/float64(max(op.Ops, 1))/op.Latency.P50.Seconds()/1e6, op.Bytes/max(op.Ops, 1)/1e6)
		}
	}
}

// fmtLatency prints d with three significant digits.
func fmtLatency(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.3gms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.3gs", d.Seconds())
}

// WriteJSON prints the report as one JSON object and a newline. Latencies
// are in microseconds.
func (r *Report) WriteJSON(w io.Writer) error {
	type latencyJSON struct {
		Count int64   `json:"count"`
		Min   int64   `json:"min"`
		Mean  float64 `json:"mean"`
		P50   int64   `json:"p50"`
		P90   int64   `json:"p90"`
		P99   int64   `json:"p99"`
		P999  int64   `json:"p99_9"`
		Max   int64   `json:"max"`
	}
	type pointJSON struct {
		AtS   float64 `json:"at_s"`
		Count int64   `json:"count"`
		P50   int64   `json:"p50_us"`
		P99   int64   `json:"p99_us"`
		Max   int64   `json:"max_us"`
	}
	type opJSON struct {
		Ops       int64       `json:"ops"`
		Bytes     int64       `json:"bytes"`
		PerSecond float64     `json:"per_second"`
		LatencyUS latencyJSON `json:"latency_us"`
		Timeline  []pointJSON `json:"timeline"`
	}
	type nodeJSON struct {
		Node       string `json:"node"`
		Requests   int64  `json:"requests"`
		Status409  int64  `json:"status_409"`
		WSSessions int64  `json:"ws_sessions"`
		WSMessages int64  `json:"ws_messages"`
	}
	op := func(o *OpReport) *opJSON {
		if o == nil {
			return nil
		}
		l := o.Latency
		points := make([]pointJSON, 0, len(o.Timeline))
		for _, p := range o.Timeline {
			points = append(points, pointJSON{p.At.Seconds(), p.Count, p.P50.Microseconds(), p.P99.Microseconds(), p.Max.Microseconds()})
		}
		return &opJSON{Ops: o.Ops, Bytes: o.Bytes, PerSecond: o.PerSecond, LatencyUS: latencyJSON{
			Count: l.Count, Min: l.Min.Microseconds(), Mean: float64(l.Mean) / float64(time.Microsecond),
			P50: l.P50.Microseconds(), P90: l.P90.Microseconds(), P99: l.P99.Microseconds(),
			P999: l.P999.Microseconds(), Max: l.Max.Microseconds(),
		}, Timeline: points}
	}
	nodes := make([]nodeJSON, 0, len(r.Nodes))
	for _, n := range r.Nodes {
		nodes = append(nodes, nodeJSON(n))
	}
	errs := r.Errors
	if errs == nil {
		errs = map[string]int64{}
	}
	return json.NewEncoder(w).Encode(struct {
		Target           string           `json:"target"`
		Scenario         string           `json:"scenario"`
		ElapsedS         float64          `json:"elapsed_s"`
		Rate             float64          `json:"rate"`
		HTTP             *opJSON          `json:"http,omitempty"`
		WS               *opJSON          `json:"ws,omitempty"`
		Poll             *opJSON          `json:"poll,omitempty"`
		Snapshot         *opJSON          `json:"snapshot,omitempty"`
		Upload           *opJSON          `json:"upload,omitempty"`
		Download         *opJSON          `json:"download,omitempty"`
		Handshake        *opJSON          `json:"handshake,omitempty"`
		TLS              *TLSInfo         `json:"tls,omitempty"`
		Idle             *idleJSON        `json:"idle,omitempty"`
		Errors           map[string]int64 `json:"errors"`
		ErrorCount       int64            `json:"error_count"`
		StickyViolations int64            `json:"sticky_violations"`
		SessionsEnded    int64            `json:"sessions_ended"`
		Reconnect        *reconnectJSON   `json:"reconnect,omitempty"`
		Nodes            []nodeJSON       `json:"nodes"`
		Failed           bool             `json:"failed"`
	}{
		Target: r.Target, Scenario: r.Scenario, ElapsedS: r.Elapsed.Seconds(), Rate: r.Rate,
		HTTP: op(r.HTTP), WS: op(r.WS), Poll: op(r.Poll), Snapshot: op(r.Snapshot),
		Upload: op(r.Upload), Download: op(r.Download), Handshake: op(r.Handshake), TLS: r.TLS, Idle: r.Idle.json(), Errors: errs, ErrorCount: r.ErrorCount(),
		StickyViolations: r.StickyViolations, SessionsEnded: r.SessionsEnded, Reconnect: r.Reconnect.json(),
		Nodes: nodes, Failed: r.Failed(),
	})
}
