package wire

import "testing"

// TestDropFields: DropFields leaves out the lines of the fields it is given,
// whatever their case, and keeps the others, and what precedes the head, in
// order.
func TestDropFields(t *testing.T) {
	t.Parallel()
	const line = "GET /a:b HTTP/1.1\r\n"
	for _, tc := range []struct {
		name, fields, want string
		drop               FieldSet
	}{
		{"none", "Host: a\r\nX: 1\r\n", "Host: a\r\nX: 1\r\n", FieldXRealIP},
		{"no fields", "", "", FieldXRealIP},
		{"first and last", "X-Real-Ip: 1\r\nA: x-real-ip: 2\r\nx-real-ip: 3\r\n", "A: x-real-ip: 2\r\n", FieldXRealIP},
		{"all", "X-Forwarded-For: 1\r\nX-Forwarded-Proto: 2\r\nX-Forwarded-Host: 3\r\nX-Real-Ip: 4\r\n", "", ForwardingFields},
		{"only those asked", "X-Forwarded-For: 1\r\nA: 1\r\nX-Forwarded-Proto: 2\r\nA: 2\r\nHost: h\r\nConnection: c\r\n",
			"A: 1\r\nX-Forwarded-Proto: 2\r\nA: 2\r\nHost: h\r\nConnection: c\r\n", FieldXForwardedFor},
		{"empty value", "X-Forwarded-Host:\r\nB: \r\n", "B: \r\n", FieldXForwardedHost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head := []byte("before" + line + tc.fields)
			if got := string(DropFields(head, len("before"), tc.drop)); got != "before"+line+tc.want {
				t.Errorf("got %q, want %q", got, "before"+line+tc.want)
			}
		})
	}
}
