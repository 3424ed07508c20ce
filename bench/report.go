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
)

// Report is the outcome of RunLoad.
type Report struct {
	Target   string
	Scenario string
	Elapsed  time.Duration
	// HTTP is the GET load (nil when the scenario has none): Ops are
	// requests answered 200 with the whole body, latency from send to the
	// last body byte.
	HTTP *OpReport
	// WS is the WebSocket load (nil when the scenario has none): Ops are
	// messages relayed customer → agent, latency from send to receipt.
	WS *OpReport
	// Idle is what the idle scenario measured (nil for the others).
	Idle *IdleReport
	// Errors counts failed operations by kind, e.g. "http_timeout",
	// "http_status_502", "ws_read_close_1012".
	Errors map[string]int64
	// StickyViolations counts answers from the wrong node (see stickiness).
	StickyViolations int64
	// SessionsEnded counts 409 answers: sessions a node did not own.
	SessionsEnded int64
	// Nodes summarizes the answers per X-Node value, sorted by name; "-"
	// holds the answers without X-Node.
	Nodes []NodeReport
}

// OpReport is the load of one kind of operation.
type OpReport struct {
	Ops       int64
	Bytes     int64
	PerSecond float64
	Latency   LatencySummary
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
func (r *Report) ErrorCount() int64 {
	var n int64
	for _, v := range r.Errors {
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
	fmt.Fprintf(&b, "load %s -> %s for %.2fs\n\n", r.Scenario, r.Target, r.Elapsed.Seconds())

	if r.Idle != nil {
		r.Idle.writeText(&b)
	} else {
		r.writeOps(&b)
	}

	fmt.Fprintf(&b, "\nsessions ended %d, sticky violations %d, errors %d\n", r.SessionsEnded, r.StickyViolations, r.ErrorCount())
	if len(r.Errors) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
			fmt.Fprintf(tw, "  %s\t%d\t\n", k, r.Errors[k])
		}
		tw.Flush()
	}

	if len(r.Nodes) > 0 {
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "node\trequests\t409s\tws sessions\tws messages\t")
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

// writeOps prints the table of the http and ws operations.
func (r *Report) writeOps(b *strings.Builder) {
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tops\tops/s\tMB/s\tp50\tp90\tp99\tp99.9\tmax\t")
	for _, op := range []struct {
		name string
		r    *OpReport
	}{{"http", r.HTTP}, {"ws", r.WS}} {
		if op.r == nil {
			continue
		}
		l := op.r.Latency
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%s\t%s\t%s\t%s\t%s\t\n", op.name, op.r.Ops, op.r.PerSecond,
			float64(op.r.Bytes)/r.Elapsed.Seconds()/1e6,
			fmtLatency(l.P50), fmtLatency(l.P90), fmtLatency(l.P99), fmtLatency(l.P999), fmtLatency(l.Max))
	}
	tw.Flush()
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
	type opJSON struct {
		Ops       int64       `json:"ops"`
		Bytes     int64       `json:"bytes"`
		PerSecond float64     `json:"per_second"`
		LatencyUS latencyJSON `json:"latency_us"`
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
		return &opJSON{Ops: o.Ops, Bytes: o.Bytes, PerSecond: o.PerSecond, LatencyUS: latencyJSON{
			Count: l.Count, Min: l.Min.Microseconds(), Mean: float64(l.Mean) / float64(time.Microsecond),
			P50: l.P50.Microseconds(), P90: l.P90.Microseconds(), P99: l.P99.Microseconds(),
			P999: l.P999.Microseconds(), Max: l.Max.Microseconds(),
		}}
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
		HTTP             *opJSON          `json:"http,omitempty"`
		WS               *opJSON          `json:"ws,omitempty"`
		Idle             *idleJSON        `json:"idle,omitempty"`
		Errors           map[string]int64 `json:"errors"`
		ErrorCount       int64            `json:"error_count"`
		StickyViolations int64            `json:"sticky_violations"`
		SessionsEnded    int64            `json:"sessions_ended"`
		Nodes            []nodeJSON       `json:"nodes"`
		Failed           bool             `json:"failed"`
	}{
		Target: r.Target, Scenario: r.Scenario, ElapsedS: r.Elapsed.Seconds(),
		HTTP: op(r.HTTP), WS: op(r.WS), Idle: r.Idle.json(), Errors: errs, ErrorCount: r.ErrorCount(),
		StickyViolations: r.StickyViolations, SessionsEnded: r.SessionsEnded,
		Nodes: nodes, Failed: r.Failed(),
	})
}
