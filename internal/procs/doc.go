// Package procs fits the processors Go runs tether on (GOMAXPROCS) to its
// load (--procs auto): one while tether uses little CPU, the runtime's
// default (the CPUs it may use, or its container's CPU limit) otherwise.
//
// It knows only the process's CPU time, the runtime's scheduling latencies
// and a clock: nothing of connections, requests or nodes. cmd/tether runs
// it for the process.
//
//	procs.Fix(n)              // n > 0: n processors, fixed; 0: auto
//	stop := procs.Run(n, log) // once serving: auto adapts until stop
//	defer stop()
package procs
