package pool

import "testing"

func TestRedactURLs(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"no url here": "no url here",
		`invalid value "a=http://u:pw@h:1" for flag -node`: `invalid value "a=http://u:xxxxx@h:1" for flag -node`,
		"--node a=https://tok@h: bad; b=http://u:p@q@h2/x": "--node a=https://xxxxx@h: bad; b=http://u:xxxxx@h2/x",
		"http://h:1/path@x":                   "http://h:xxxxx@x",
		"http://plain.example:80 and ftp://x": "http://plain.example:80 and ftp://x",
	} {
		if got := RedactURLs(in); got != want {
			t.Errorf("RedactURLs(%q) = %q; want %q", in, got, want)
		}
	}
}
