// Package logwriter is the buffered writer tether's access log goes
// through: whole lines in, out to the file or stdout when its 64 KiB buffer
// fills or a flush interval passes, so a busy proxy makes no write system
// call per request and drops nothing. cmd/tether builds one and hands it to
// zerolog.
//
// It knows bytes and a clock: nothing of requests, connections or log
// fields.
//
//	w := logwriter.New(os.Stdout, 0) // flushed every 200ms
//	defer w.Close()
package logwriter
