package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestProcsAuto: an idle tether with --procs auto (the default) runs Go's
// code on one processor once it has been light for a moment, and says at
// start that it adapts; --procs 2 keeps two.
func TestProcsAuto(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // as if unset, whatever the tests run with
	n := startNode(t, node1, 0)
	auto := startTether(t, []*testNode{n})
	fixed := startTether(t, []*testNode{n}, "--procs", "2")
	procs := func(tt *tether) float64 {
		_, body := adminDo(t, "GET", "http://"+tt.adminAddr(t)+"/metrics", "", nil)
		return metricValue(body, "go_sched_gomaxprocs_threads")
	}
	if !waitFor(15*time.Second, func() bool { return procs(auto) == 1 }) {
		t.Fatalf("--procs auto: go_sched_gomaxprocs_threads %v after 15s idle, want 1", procs(auto))
	}
	if got := procs(fixed); got != 2 {
		t.Errorf("--procs 2: go_sched_gomaxprocs_threads %v, want 2", got)
	}
	for _, want := range []string{`"message":"procs: auto`, `"procs":1,`} { // the start, then the change (debug)
		if !strings.Contains(auto.stderr.String(), want) {
			t.Errorf("--procs auto logged no %s:\n%s", want, tail(auto.stderr.String(), 2000))
		}
	}
	if !strings.Contains(fixed.stderr.String(), `"message":"procs: fixed by --procs"`) {
		t.Errorf("--procs 2 logged no line saying so:\n%s", tail(fixed.stderr.String(), 2000))
	}
}
