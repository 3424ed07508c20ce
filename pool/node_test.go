package pool

import (
	"fmt"
	"testing"
)

// TestCheckRiseFall: a count below 1 is refused naming its flag; Validate
// refuses negative counts with the same words (zero is the default there).
func TestCheckRiseFall(t *testing.T) {
	for _, tc := range []struct {
		rise, fall int
		want       string
	}{
		{1, 1, ""}, {2, 3, ""},
		{0, 2, "--rise 0: must be at least 1"},
		{2, 0, "--fall 0: must be at least 1"},
		{-1, 2, "--rise -1: must be at least 1"},
	} {
		err := CheckRiseFall(tc.rise, tc.fall)
		if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
			t.Errorf("CheckRiseFall(%d, %d) = %v, want %q", tc.rise, tc.fall, err, tc.want)
		}
	}
	for _, c := range []Config{{Rise: -1}, {Fall: -2}} {
		c.Nodes = []NodeConfig{{Name: "a", URL: "http://127.0.0.1:1"}}
		c.SetDefaults()
		want := CheckRiseFall(c.Rise, c.Fall)
		if err := c.Validate(); err == nil || err.Error() != want.Error() {
			t.Errorf("Validate(rise %d, fall %d) = %v, want %v", c.Rise, c.Fall, err, want)
		}
	}
}
