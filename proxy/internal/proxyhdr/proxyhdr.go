package proxyhdr

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/pires/go-proxyproto"
	"github.com/tether-lb/tether/proxy/internal/sockio"
	"golang.org/x/sys/unix"
)

// MaxV2Length bounds the length field of a v2 header: the address block
// (at most 216 bytes, for AF_UNIX) and the TLVs after the 16-byte prefix.
// It is go-proxyproto's own bound (MaxV2HeaderSize); a header claiming more
// is refused before any of it is read.
const MaxV2Length = 4096

// V2Prefix is the length of a v2 header's fixed part: signature, version
// and command, family, length.
const V2Prefix = 16

const (
	proxyV1Max = 107 // longest v1 line, CRLF included (the spec's worst case)
	proxyPeek  = 128 // bytes peeked at once: any v1 line, a v2 header with a short TLV list
)

// V2Sig is the signature a v2 header starts with.
var V2Sig = proxyproto.SIGV2

var proxyV1Sig = []byte("PROXY ")

var (
	// ErrUntrusted is a connection from a source outside
	// --proxy-protocol-from.
	ErrUntrusted = errors.New("proxy protocol: source not in --proxy-protocol-from")
	// errProxyMissing is a connection whose first bytes are not a PROXY
	// protocol header (a client speaking HTTP or TLS directly).
	errProxyMissing = errors.New("proxy protocol: no header")
	// errProxyTooLong is a v1 line without its CRLF in 107 bytes, or a v2
	// header longer than MaxV2Length.
	errProxyTooLong = errors.New("proxy protocol: header too long")
	// ErrSilent is a connection closed or timed out before its first
	// byte: a TCP health check, or an idle client. It is not counted.
	ErrSilent = errors.New("proxy protocol: nothing sent")
)

// proxyReader holds one header's bytes, read exactly, and the reader the
// parser takes them from. Pooled: a connection borrows one for its header.
type proxyReader struct {
	buf [V2Prefix + MaxV2Length]byte
	src bytes.Reader
	br  *bufio.Reader // over src; larger than any v1 line, which the parser wants buffered whole
}

var proxyReaders = sync.Pool{New: func() any {
	p := &proxyReader{}
	p.br = bufio.NewReaderSize(&p.src, proxyPeek)
	return p
}}

// Trusted reports whether a connection from a may send a PROXY
// protocol header: its address is in one of from.
func Trusted(from []netip.Prefix, a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range from {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Read reads the PROXY protocol header at the start of c (whose
// RawConn is rc) under c's read deadline, set by the caller, and returns the
// client address it carries: empty for a v2 LOCAL header (the L4 tier's own
// health check), a v1 UNKNOWN one, or a family other than TCP over IPv4 or
// IPv6, which keep the socket's address. Not one byte past the header is
// read.
func Read(c net.Conn, rc syscall.RawConn) (string, error) {
	p := proxyReaders.Get().(*proxyReader)
	defer proxyReaders.Put(p)
	n, err := p.readExact(c, rc)
	if err != nil {
		return "", err
	}
	return p.parse(n)
}

// parse parses the header in p.buf[:n] with go-proxyproto and returns the
// address as Read does.
func (p *proxyReader) parse(n int) (string, error) {
	p.src.Reset(p.buf[:n])
	p.br.Reset(&p.src)
	h, err := proxyproto.Read(p.br)
	p.br.Reset(nil)
	if err != nil {
		return "", fmt.Errorf("proxy protocol: %w", err)
	}
	if h.Command.IsLocal() {
		return "", nil
	}
	switch h.TransportProtocol {
	case proxyproto.TCPv4, proxyproto.TCPv6:
		if ta, ok := h.SourceAddr.(*net.TCPAddr); ok {
			return ta.IP.String(), nil
		}
	}
	return "", nil
}

// readExact reads the header into p.buf and returns its length. It peeks
// at the socket (MSG_PEEK) to find where the header ends, then reads that
// many bytes; while the header is incomplete, what arrived is all header and
// is read, and it waits for more. A v2 header's length is known from its
// prefix and is read with reads no longer than what is left of it.
func (p *proxyReader) readExact(c net.Conn, rc syscall.RawConn) (int, error) {
	have := 0
	for {
		m, err := peek(rc, p.buf[have:proxyPeek])
		if err != nil {
			if have == 0 && sockio.IsTimeout(err) {
				return 0, ErrSilent
			}
			return 0, fmt.Errorf("proxy protocol: %w", err)
		}
		if m == 0 {
			if have == 0 {
				return 0, ErrSilent
			}
			return 0, fmt.Errorf("proxy protocol: %w", io.ErrUnexpectedEOF)
		}
		need, err := proxyHeaderLen(p.buf[:have+m])
		if err != nil {
			return 0, err
		}
		if need == 0 { // incomplete: all of it is header
			need = have + m
		}
		if _, err := io.ReadFull(c, p.buf[have:need]); err != nil {
			return 0, fmt.Errorf("proxy protocol: %w", err)
		}
		have = need
		if l, _ := proxyHeaderLen(p.buf[:have]); l == have {
			return have, nil
		}
	}
}

// peek reads what the socket holds into b without taking it, waiting (under
// the conn's read deadline) until it holds something. 0 means the peer
// closed.
func peek(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var serr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			n, _, serr = unix.Recvfrom(int(fd), b, unix.MSG_PEEK)
			if serr != unix.EINTR {
				return serr != unix.EAGAIN
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	return n, nil
}

// proxyHeaderLen returns the length of the PROXY protocol header b starts
// with, or 0 when b is a proper beginning of one too short to tell. A
// beginning that is no header's, or a header longer than allowed, is an
// error.
func proxyHeaderLen(b []byte) (int, error) {
	if k := min(len(b), len(V2Sig)); bytes.Equal(b[:k], V2Sig[:k]) {
		if len(b) > 12 && b[12] != 0x20 && b[12] != 0x21 { // version 2, LOCAL or PROXY
			return 0, fmt.Errorf("proxy protocol: v2 version and command %#x", b[12])
		}
		if len(b) < V2Prefix {
			return 0, nil
		}
		l := int(binary.BigEndian.Uint16(b[14:16]))
		if l > MaxV2Length {
			return 0, fmt.Errorf("%w: v2 length %d, at most %d", errProxyTooLong, l, MaxV2Length)
		}
		return V2Prefix + l, nil
	}
	if k := min(len(b), len(proxyV1Sig)); bytes.Equal(b[:k], proxyV1Sig[:k]) {
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i < proxyV1Max {
			return i + 1, nil
		}
		if len(b) >= proxyV1Max {
			return 0, fmt.Errorf("%w: no CRLF in the first %d bytes of a v1 line", errProxyTooLong, proxyV1Max)
		}
		return 0, nil
	}
	return 0, errProxyMissing
}
