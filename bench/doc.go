// Package bench is tether's harness. It owns the fake co-browse node, the
// load generator and its reports; it is not on tether's data path and
// imports nothing of tether.
//
// Node speaks the protocol of DESIGN.md: health and its switch, the
// stickiness cookie rules (409 with X-Session-Ended for a session it does
// not own), customer/agent relay and echo WebSockets, long polls, resources
// of N bytes, uploads answered with their checksum, and an echo of the
// request head. RunLoad drives the http, ws or mixed scenario at a loopback
// target and returns a Report: HDR latency percentiles, throughput, errors
// by kind, sticky violations and a per-node summary.
//
//	node := bench.NewNode(bench.NodeConfig{Name: "CB_Server_1"}, log)
//	go node.Serve(ln)
//	defer node.Close()
//	rep, err := bench.RunLoad(ctx, bench.LoadConfig{Target: "http://127.0.0.1:8080"}, log)
//	rep.WriteText(os.Stdout)
package bench
