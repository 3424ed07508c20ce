// Package syscount counts the system calls this process's threads enter,
// for benchmarks: the kernel's perf events (perf_event_open(2)) on the
// tracepoint raw_syscalls:sys_enter, one counter per thread, inherited by
// the threads created later. It is test support: only _test.go files
// import it.
//
//	sc := syscount.Start(b) // nil, logged once, where perf events are not allowed
//	for b.Loop() { ... }
//	sc.Report(b) // syscalls/op
//
// The count is the whole process's: in a benchmark whose client and node
// run in the same process, their calls are in it too.
package syscount
