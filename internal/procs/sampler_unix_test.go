//go:build unix

package procs

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestSamplerReadsThisProcess: the sampler sees CPU this process burns and
// the wake-ups of goroutines it starts.
func TestSamplerReadsThisProcess(t *testing.T) {
	cpu, err := newCPUClock()
	if err != nil {
		t.Fatal(err)
	}
	s := newSampler(cpu)
	s.read()
	start, _ := cpu()
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for { // 50 ms of CPU, bounded in time
		for i := range 1 << 16 {
			x += i ^ x
		}
		if used, _ := cpu(); used-start >= 50*time.Millisecond || time.Now().After(deadline) {
			break
		}
	}
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(runtime.Gosched)
	}
	wg.Wait()
	got := s.read()
	if got.cores <= 0 || got.cores > float64(runtime.NumCPU())+1 {
		t.Errorf("cores %v after burning CPU, want above 0 and at most the CPUs", got.cores)
	}
	if got.waits == 0 {
		t.Errorf("no goroutine wake-up sampled after 64 goroutines ran (x=%d)", x)
	}
	if got.late > got.waits {
		t.Errorf("late %d > waits %d", got.late, got.waits)
	}
}
