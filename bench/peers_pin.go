package bench

import (
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Pinning of a comparison (CompareConfig.Pin).
const (
	// PinNone lets the kernel schedule everything on every CPU; the peer
	// under test gets as many workers as there are CPUs.
	PinNone = "none"
	// PinSplit runs the peer under test on the second CPU this process may
	// use, with one worker, and the load generator and the nodes on the
	// first. Linux only: elsewhere planPins refuses it with an error
	// wrapping errors.ErrUnsupported.
	PinSplit = "split"
)

// pinPlan is where the processes of a comparison run.
type pinPlan struct {
	mode      string
	loadCPUs  string // taskset list of this process and the nodes; "" for any
	proxyCPUs string // taskset list of the peer under test; "" for any
	proxyCPUn int    // how many CPUs the peer under test may use
	workers   int    // workers of the peer under test
}

// planPins decides the layout of mode over cpus, the CPUs this process may
// use.
func planPins(mode string, cpus []int) (pinPlan, error) {
	if len(cpus) == 0 {
		return pinPlan{}, errors.New("--pin: no CPU in this process's affinity")
	}
	switch mode {
	case PinNone:
		return pinPlan{mode: mode, proxyCPUn: len(cpus), workers: len(cpus)}, nil
	case PinSplit:
		if err := pinSupport(); err != nil {
			return pinPlan{}, fmt.Errorf("--pin split: %w", err)
		}
		if len(cpus) < 2 {
			return pinPlan{}, fmt.Errorf("--pin split: needs 2 CPUs, this process may use %d", len(cpus))
		}
		if _, err := exec.LookPath("taskset"); err != nil {
			return pinPlan{}, errors.New("--pin split: taskset not found (util-linux)")
		}
		return pinPlan{mode: mode, loadCPUs: strconv.Itoa(cpus[0]), proxyCPUs: strconv.Itoa(cpus[1]), proxyCPUn: 1, workers: 1}, nil
	}
	return pinPlan{}, fmt.Errorf("--pin %q: want %s or %s", mode, PinNone, PinSplit)
}

// String says how the processes were pinned, for the report.
func (p pinPlan) String() string {
	if p.mode == PinNone {
		return fmt.Sprintf("not pinned: load generator, nodes and the peer under test share all CPUs; %d worker(s) per peer", p.workers)
	}
	return fmt.Sprintf("pinned with taskset: peer under test on CPU %s (%d worker), load generator and both nodes on CPU %s",
		p.proxyCPUs, p.workers, p.loadCPUs)
}

// parseCPUList parses a kernel CPU list such as "0-3,8,10-11".
func parseCPUList(s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b-a > 4096 {
				return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}
