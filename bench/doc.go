// Package bench is tether's harness. It owns the fake co-browse node, the
// load generator and its reports, and the side-by-side comparison with
// nginx and HAProxy; it is not on tether's data path and imports nothing of
// tether but tlsterm/tlstest, which writes the comparison's certificates.
//
// Node speaks the protocol of docs/ARCHITECTURE.md: health and its switch, the
// stickiness cookie rules (409 with X-Session-Ended for a session it does
// not own), customer/agent relay and echo WebSockets, long polls, resources
// of N bytes, uploads answered with their checksum, and an echo of the
// request head. RunLoad drives a scenario (http, cobrowse, ws-echo,
// longpoll, mixed, big, tls-handshake, idle) at a loopback http or https
// target, in a closed or an open loop (load_pace.go), and returns a Report:
// HDR latency percentiles and their timeline, throughput, errors by kind,
// sticky violations and a per-node summary; WritePlot draws it. RunCompare
// runs the scenarios against each peer in turn and tabulates the medians.
//
//	node := bench.NewNode(bench.NodeConfig{Name: "CB_Server_1"}, log)
//	go node.Serve(ln)
//	defer node.Close()
//	rep, err := bench.RunLoad(ctx, bench.LoadConfig{Target: "http://127.0.0.1:8080", Scenario: bench.ScenarioCobrowse}, log)
//	rep.WriteText(os.Stdout)
package bench
