package tlsterm

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The idle-connection memory benchmark runs its clients in a child process
// (this test binary, re-executed with memClientEnv set), so the measured
// heap is the server side's alone.
const (
	memClientEnv  = "TLSTERM_MEM_CLIENT" // the server address
	memConnsEnv   = "TLSTERM_MEM_CONNS"
	memPayloadEnv = "TLSTERM_MEM_PAYLOAD" // bytes echoed once per conn
	memMaxVerEnv  = "TLSTERM_MEM_TLS"     // "1.2", "1.3" or "plain"
	memClientLife = 2 * time.Minute       // the child exits by itself after this
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(memClientEnv); addr != "" {
		os.Exit(memClient(addr))
	}
	os.Exit(m.Run())
}

// BenchmarkIdleConnMemory measures what one idle server-side connection costs
// after its handshake (and, in some cases, one exchange), as the delta of the
// server's HeapInuse and StackInuse over 2,000 connections. plain-tcp is the
// baseline: a *net.TCPConn alone. Run with -benchtime=1x.
func BenchmarkIdleConnMemory(b *testing.B) {
	const conns = 2000
	pair := writePair(b, b.TempDir(), "site.test")
	cases := []struct {
		name    string
		version string // client's max version, or "plain"
		payload int    // bytes echoed once after the handshake
		reader  bool   // a goroutine stays blocked in Read, as a session's does
		fresh   bool   // that goroutine is a fresh one, not the handshake's
	}{
		{"plain-tcp", "plain", 0, false, false},
		{"plain-tcp/reader", "plain", 0, true, false},
		{"tls13/handshake", "1.3", 0, false, false},
		{"tls13/handshake/reader", "1.3", 0, true, false},
		{"tls13/handshake/fresh-reader", "1.3", 0, true, true},
		{"tls13/echo-1KiB", "1.3", 1 << 10, false, false},
		{"tls13/echo-64KiB", "1.3", 64 << 10, false, false},
		{"tls13/echo-64KiB/reader", "1.3", 64 << 10, true, false},
		{"tls13/echo-64KiB/fresh-reader", "1.3", 64 << 10, true, true},
		{"tls12/handshake", "1.2", 0, false, false},
		{"tls12/echo-64KiB", "1.2", 64 << 10, false, false},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			cfg := &Config{Listen: ":0", Certs: []CertFile{pair}}
			hs := NewHandshaker(cfg, loadCerts(b, cfg).ServerConfig())
			var heap, stack float64
			for b.Loop() {
				heap, stack = idleConnMemory(b, hs, conns, tc.version, tc.payload, tc.reader, tc.fresh)
			}
			b.ReportMetric(heap, "heap-B/conn")
			b.ReportMetric(stack, "stack-B/conn")
			b.ReportMetric(heap+stack, "B/conn")
		})
	}
}

// idleConnMemory opens n connections from a child process, holds them idle on
// the server side, and returns the heap and stack bytes per connection.
func idleConnMemory(b *testing.B, hs *Handshaker, n int, version string, payload int, reader, fresh bool) (heap, stack float64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()

	var (
		mu    sync.Mutex
		held  []net.Conn // guarded by mu
		wg    sync.WaitGroup
		ready sync.WaitGroup // one per connection, done once it is idle
	)
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	ready.Add(n)
	serve := func(raw net.Conn) net.Conn {
		defer ready.Done()
		var conn net.Conn = raw
		if version != "plain" {
			tc, err := hs.Handshake(context.Background(), raw)
			if err != nil {
				b.Error(err)
				raw.Close()
				return nil
			}
			conn = tc
		}
		if payload > 0 {
			buf := make([]byte, payload)
			if _, err := io.ReadFull(conn, buf); err != nil {
				b.Error(err)
				return nil
			}
			if _, err := conn.Write(buf); err != nil {
				b.Error(err)
				return nil
			}
		}
		mu.Lock()
		held = append(held, conn)
		mu.Unlock()
		return conn
	}

	runtime.GC()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		memClientEnv+"="+ln.Addr().String(),
		memConnsEnv+"="+strconv.Itoa(n),
		memPayloadEnv+"="+strconv.Itoa(payload),
		memMaxVerEnv+"="+version)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()

	for range n {
		raw, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			conn := serve(raw)
			switch {
			case conn == nil || !reader:
			case fresh:
				wg.Go(func() { idleRead(conn) })
			default:
				idleRead(conn)
			}
		})
	}
	ready.Wait()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("client: %q, %v", line, err)
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap = float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / float64(n)
	stack = float64(int64(after.StackInuse)-int64(before.StackInuse)) / float64(n)
	stdin.Close()
	return heap, stack
}

// idleRead waits in Read, as a session's reader does, until conn closes.
func idleRead(conn net.Conn) {
	var one [1]byte
	_, _ = conn.Read(one[:])
}

// memClient is the child process: it opens the connections, echoes the
// payload once on each, says "ready", and holds them until stdin closes or
// memClientLife passes.
func memClient(addr string) int {
	n, _ := strconv.Atoi(os.Getenv(memConnsEnv))
	payload, _ := strconv.Atoi(os.Getenv(memPayloadEnv))
	version := os.Getenv(memMaxVerEnv)
	tc := clientFor("site.test")
	if version == "1.2" {
		tc.MaxVersion = tls.VersionTLS12
	}
	conns := make([]net.Conn, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range conns {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", addr, ioTimeout)
			if err == nil && version != "plain" {
				t := tls.Client(c, tc)
				err = t.Handshake()
				c = t
			}
			if err == nil && payload > 0 {
				buf := make([]byte, payload)
				if _, err = c.Write(buf); err == nil {
					_, err = io.ReadFull(c, buf)
				}
			}
			conns[i] = c
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			fmt.Fprintln(os.Stderr, "client:", err)
			return 1
		}
	}
	fmt.Println("ready")
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(memClientLife):
	}
	return 0
}
