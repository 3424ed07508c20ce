// Package keepalive holds plain keep-alive client connections between
// requests on epoll loops of tether's own (--http-loops): an idle
// connection costs its descriptor and the caller's record, with no
// goroutine, buffer or deadline. When epoll reports one readable, a loop
// hands it to a worker goroutine, which serves it (Conn.Serve) and gives it
// back with Park; a sweep on each loop's timer closes those idle past
// their time and cools those idle long (Conn.Cool: the caller lets go of
// its net.Conn and keeps the bare descriptor).
//
// It knows descriptors, epoll and the order of ownership only: what a
// connection carries, how it is served, its timeouts and its accounting
// are the caller's (package proxy), asked through Conn. It must never know
// HTTP, nodes, routing or logs beyond its own failures.
//
//	ls, err := keepalive.New(keepalive.Options{Loops: 0, Tick: tick, Log: &log})
//	// on the goroutine that served c, once its answer is out:
//	if ls.Park(c, cool) { return } // the loop owns c now
package keepalive
