package bench_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/tether-lb/tether/bench"
)

func ExampleNode() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	node := bench.NewNode(bench.NodeConfig{Name: "CB_Server_1"}, zerolog.Nop())
	go node.Serve(ln)
	defer node.Close()

	resp, err := http.Get("http://" + ln.Addr().String() + "/cobrowse/resource?bytes=10")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get("X-Node"), resp.Header.Get("Set-Cookie"))
	// Output: 200 CB_Server_1 gcbSessionServer=CB_Server_1; Path=/
}

func ExampleRunLoad() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	node := bench.NewNode(bench.NodeConfig{Name: "CB_Server_1"}, zerolog.Nop())
	go node.Serve(ln)
	defer node.Close()

	rep, err := bench.RunLoad(context.Background(), bench.LoadConfig{
		Target:   "http://" + ln.Addr().String(),
		Scenario: bench.ScenarioMixed,
		Duration: 200 * time.Millisecond,
		Conns:    2,
		Sessions: 2,
	}, zerolog.Nop())
	if err != nil {
		panic(err)
	}
	// rep.WriteText(os.Stdout) prints the tables.
	fmt.Println(rep.Failed(), rep.Nodes[0].Node, rep.Nodes[0].WSSessions)
	// Output: false CB_Server_1 2
}
