package pool

import (
	"fmt"
	"strings"
)

// checkNodeURLs refuses a node URL with user info (user:password@): tether
// sends no credentials to nodes, and the error, which reaches stderr and on
// a reload the journal, must not carry the password. It runs first in
// Config.Validate, whose other errors print the URL whole.
func checkNodeURLs(nodes []NodeConfig) error {
	for _, n := range nodes {
		if strings.Contains(n.URL, "@") {
			return fmt.Errorf("--node %s=%s: a node URL must not carry credentials (user:password@)", n.Name, redactUserinfo(n.URL))
		}
	}
	return nil
}

// RedactURLs returns text with the user info of every URL in it
// ("scheme://user:password@host") replaced as url.URL.Redacted does
// ("user:xxxxx@"); a user alone, which may be a token, becomes "xxxxx". A
// URL ends at white space or a quote; its user info runs to its last '@',
// so a URL that does not parse is redacted too. Errors that may quote a
// node URL pass through it before they are printed.
func RedactURLs(text string) string {
	var b strings.Builder
	for {
		i := strings.Index(text, "://")
		if i < 0 {
			break
		}
		end := i + 3 + strings.IndexFunc(text[i+3:], func(r rune) bool { return r <= ' ' || r == '"' || r == '\'' || r == '`' })
		if end < i+3 {
			end = len(text)
		}
		b.WriteString(text[:i+3])
		b.WriteString(redactUserinfo(text[i+3 : end]))
		text = text[end:]
	}
	if b.Len() == 0 {
		return text
	}
	b.WriteString(text)
	return b.String()
}

// redactUserinfo redacts the user info of one URL, or of what follows its
// "scheme://": everything before its last '@'.
func redactUserinfo(u string) string {
	prefix := ""
	if i := strings.Index(u, "://"); i >= 0 {
		prefix, u = u[:i+3], u[i+3:]
	}
	at := strings.LastIndexByte(u, '@')
	if at < 0 {
		return prefix + u
	}
	info := "xxxxx"
	if user, _, ok := strings.Cut(u[:at], ":"); ok {
		info = user + ":xxxxx"
	}
	return prefix + info + u[at:]
}
