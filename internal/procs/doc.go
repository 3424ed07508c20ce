// Package procs fits the processors Go runs tether on (GOMAXPROCS) to its
// load (--procs auto): one while tether uses little CPU, the runtime's
// default (the CPUs it may use, or its container's CPU limit) otherwise.
//
// It knows only the process's CPU time, the runtime's scheduling latencies
// and a clock: nothing of connections, requests or nodes. cmd/tether runs
// it for the process.
//
//	stop := procs.Run(0, log) // 0: auto; n > 0: n processors, fixed
//	defer stop()
package procs
