/*
 * wsgen: a light WebSocket echo load generator for tether's bench harness.
 *
 * One thread, one epoll loop, non-blocking sockets. Each of N sessions
 * connects to a loopback address, upgrades GET /cobrowse/ws?session=ID&role=echo
 * (with a cookie from -k, in turn), then keeps one masked binary message of
 * M bytes in flight: send, read the echo, check it, send again. At the end
 * of the run it prints one line of key=value pairs:
 *
 *   wsgen sessions=32 msg_bytes=256 elapsed_s=5.001 connected=32 messages=...
 *     rate=... p50_us=... p90_us=... p99_us=... max_us=... upgrade_errors=0
 *     io_errors=0 bad_frames=0 timeouts=0 reconnects=0
 *
 * The upgrade's answer must be 101 (Sec-WebSocket-Accept is not checked).
 * A session that fails (refused upgrade, reset, bad frame, no echo within
 * the timeout) is counted and opened anew, at most 4 times in a row (a
 * successful upgrade starts the count again). Loopback only; sessions,
 * message size and duration are bounded.
 *
 * Build: cc -O2 -o wsgen wsgen.c
 * Run:   wsgen -a 127.0.0.1:8080 -s 32 -m 256 -d 5 -k gcbSessionServer=CB_Server_1
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SESSIONS 10000
#define MAX_MSG_BYTES (1 << 20)
#define MAX_COOKIES 16
#define MAX_COOKIE_LEN 256
#define HEAD_BYTES 4096   /* the upgrade answer's head must fit */
#define MAX_RETRIES 4     /* new attempts per session after failures in a row */
#define SUB_BITS 4        /* histogram: 16 buckets per power of two */
#define SUB (1 << SUB_BITS)
#define NBUCKETS (2 * SUB + 40 * SUB)

enum state { CONNECTING, UPGRADING, OPEN, DEAD };

struct session {
	int fd;
	int idx;
	uint32_t gen;           /* attempt number: events of a closed socket are stale */
	enum state state;
	int retries;
	int want_out;           /* EPOLLOUT registered */
	unsigned char *wbuf;    /* pending bytes: the upgrade request or a frame */
	size_t wlen, woff, wcap;
	unsigned char *rbuf;    /* bytes read, not yet consumed */
	size_t rlen, rcap;
	uint64_t since_ns;      /* connect start, or the send of the message in flight */
};

static struct {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char host[128];
	int sessions;
	size_t msg_bytes;
	double duration_s;
	double timeout_s;
	char *cookies[MAX_COOKIES];
	int ncookies;
} cfg = {.sessions = 32, .msg_bytes = 256, .duration_s = 5, .timeout_s = 10};

static struct {
	uint64_t messages, connected, upgrade_errors, io_errors, bad_frames, timeouts, reconnects;
	uint64_t hist[NBUCKETS];
	uint64_t max_us;
} st;

static int ep;
static struct session *sessions;
static unsigned char *pattern;
static uint32_t rng;
static uint64_t end_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

/* Histogram of latencies in microseconds: exact below 2*SUB, then SUB
 * buckets per power of two (about 6% wide). */
static int bucket_of(uint64_t us)
{
	if (us < 2 * SUB)
		return (int)us;
	int e = 63 - __builtin_clzll(us); /* e >= SUB_BITS + 1 */
	int i = 2 * SUB + (e - SUB_BITS - 1) * SUB + (int)((us >> (e - SUB_BITS)) & (SUB - 1));
	return i < NBUCKETS ? i : NBUCKETS - 1;
}

/* The middle of bucket i, in microseconds. */
static uint64_t value_of(int i)
{
	if (i < 2 * SUB)
		return (uint64_t)i;
	int e = (i - 2 * SUB) / SUB + SUB_BITS + 1;
	uint64_t sub = (uint64_t)((i - 2 * SUB) % SUB);
	uint64_t width = 1ull << (e - SUB_BITS);
	return ((SUB + sub) << (e - SUB_BITS)) + width / 2;
}

static uint64_t percentile(double p)
{
	if (st.messages == 0)
		return 0;
	uint64_t want = (uint64_t)(p * (double)st.messages + 0.999999), seen = 0;
	if (want < 1)
		want = 1;
	for (int i = 0; i < NBUCKETS; i++) {
		seen += st.hist[i];
		if (seen >= want)
			return value_of(i) < st.max_us ? value_of(i) : st.max_us;
	}
	return st.max_us;
}

static void base64(const unsigned char *in, size_t n, char *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;
	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = tab[(v >> 6) & 63];
		out[o++] = tab[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = tab[(v >> 6) & 63];
		out[o++] = '=';
	}
	out[o] = 0;
}

/* tag is the epoll data of s's current socket: its index and attempt. */
static uint64_t tag(const struct session *s)
{
	return (uint64_t)s->gen << 32 | (uint32_t)s->idx;
}

static void set_events(struct session *s, int out)
{
	struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u64 = tag(s)};
	if (s->want_out != out && epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev) == 0)
		s->want_out = out;
}

static void open_session(struct session *s);

/* fail closes s, counts the failure in *counter and opens it anew while the
 * run lasts and retries remain. */
static void fail(struct session *s, uint64_t *counter)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->state = DEAD;
	if (now_ns() >= end_ns)
		return; /* the run is over: not a failure */
	(*counter)++;
	if (s->retries >= MAX_RETRIES)
		return;
	s->retries++;
	st.reconnects++;
	open_session(s);
}

/* flush writes the pending bytes; it reports 0 after a failure. */
static int flush(struct session *s)
{
	while (s->woff < s->wlen) {
		ssize_t n = send(s->fd, s->wbuf + s->woff, s->wlen - s->woff, MSG_NOSIGNAL);
		if (n > 0) {
			s->woff += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			set_events(s, 1);
			return 1;
		}
		fail(s, &st.io_errors);
		return 0;
	}
	set_events(s, 0);
	return 1;
}

/* send_message frames the pattern as one masked binary message. */
static void send_message(struct session *s)
{
	unsigned char *w = s->wbuf;
	size_t h = 0, m = cfg.msg_bytes;
	w[h++] = 0x82; /* FIN, binary */
	if (m < 126) {
		w[h++] = 0x80 | (unsigned char)m;
	} else if (m <= 0xffff) {
		w[h++] = 0x80 | 126;
		w[h++] = (unsigned char)(m >> 8);
		w[h++] = (unsigned char)m;
	} else {
		w[h++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			w[h++] = (unsigned char)((uint64_t)m >> (8 * i));
	}
	uint32_t k = next_rand();
	unsigned char key[4] = {(unsigned char)(k >> 24), (unsigned char)(k >> 16), (unsigned char)(k >> 8), (unsigned char)k};
	memcpy(w + h, key, 4);
	h += 4;
	for (size_t i = 0; i < m; i++)
		w[h + i] = pattern[i] ^ key[i & 3];
	s->wlen = h + m;
	s->woff = 0;
	s->since_ns = now_ns();
	flush(s);
}

static void open_session(struct session *s)
{
	s->rlen = 0;
	s->want_out = 1;
	s->gen++;
	s->since_ns = now_ns();
	s->fd = socket(cfg.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		st.io_errors++;
		s->state = DEAD;
		return;
	}
	int one = 1;
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = tag(s)};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
		close(s->fd);
		s->fd = -1;
		st.io_errors++;
		s->state = DEAD;
		return;
	}
	s->state = CONNECTING;
	if (connect(s->fd, (struct sockaddr *)&cfg.addr, cfg.addrlen) < 0 && errno != EINPROGRESS) {
		fail(s, &st.io_errors);
		return;
	}
	unsigned char raw[16];
	char key[25];
	for (int i = 0; i < 16; i += 4) {
		uint32_t r = next_rand();
		memcpy(raw + i, &r, 4);
	}
	base64(raw, 16, key);
	int n = snprintf((char *)s->wbuf, s->wcap,
		"GET /cobrowse/ws?session=wsgen-%d-%d&role=echo HTTP/1.1\r\n"
		"Host: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
		(int)getpid(), s->idx, cfg.host, key,
		cfg.ncookies ? "Cookie: " : "", cfg.ncookies ? cfg.cookies[s->idx % cfg.ncookies] : "",
		cfg.ncookies ? "\r\n" : "");
	s->wlen = (size_t)n;
	s->woff = 0;
}

/* on_head handles the upgrade answer once its head is complete. */
static void on_head(struct session *s)
{
	unsigned char *end = memmem(s->rbuf, s->rlen, "\r\n\r\n", 4);
	if (end == NULL) {
		if (s->rlen == s->rcap)
			fail(s, &st.upgrade_errors);
		return;
	}
	if (s->rlen < 12 || memcmp(s->rbuf, "HTTP/1.1 101", 12) != 0) {
		fail(s, &st.upgrade_errors);
		return;
	}
	size_t head = (size_t)(end - s->rbuf) + 4;
	if (head != s->rlen) { /* nothing was sent yet: nothing may come */
		fail(s, &st.bad_frames);
		return;
	}
	s->rlen = 0;
	s->state = OPEN;
	s->retries = 0;
	st.connected++;
	send_message(s);
}

/* on_frame handles the echo once it is complete; it reports 0 after a
 * failure. */
static int on_frame(struct session *s)
{
	unsigned char *r = s->rbuf;
	if (s->rlen < 2)
		return 1;
	size_t h = 2;
	uint64_t len = r[1] & 0x7f;
	if ((r[0] & 0x0f) == 0x8) { /* Close from the server */
		fail(s, &st.io_errors);
		return 0;
	}
	if (r[0] != 0x82 || (r[1] & 0x80)) { /* want FIN, binary, unmasked */
		fail(s, &st.bad_frames);
		return 0;
	}
	if (len == 126) {
		if (s->rlen < 4)
			return 1;
		len = (uint64_t)r[2] << 8 | r[3];
		h = 4;
	} else if (len == 127) {
		if (s->rlen < 10)
			return 1;
		len = 0;
		for (int i = 2; i < 10; i++)
			len = len << 8 | r[i];
		h = 10;
	}
	if (len != cfg.msg_bytes) {
		fail(s, &st.bad_frames);
		return 0;
	}
	if (s->rlen < h + len)
		return 1;
	if (s->rlen != h + len || memcmp(r + h, pattern, len) != 0) {
		fail(s, &st.bad_frames);
		return 0;
	}
	uint64_t t = now_ns();
	if (t < end_ns) {
		uint64_t us = (t - s->since_ns) / 1000;
		st.messages++;
		st.hist[bucket_of(us)]++;
		if (us > st.max_us)
			st.max_us = us;
	}
	s->rlen = 0;
	send_message(s);
	return 1;
}

static void on_readable(struct session *s)
{
	for (;;) {
		if (s->rlen == s->rcap) {
			fail(s, s->state == UPGRADING ? &st.upgrade_errors : &st.bad_frames);
			return;
		}
		size_t room = s->rcap - s->rlen;
		ssize_t n = recv(s->fd, s->rbuf + s->rlen, room, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			fail(s, s->state == UPGRADING ? &st.upgrade_errors : &st.io_errors);
			return;
		}
		s->rlen += (size_t)n;
		if (s->state == UPGRADING) {
			on_head(s);
			if (s->state != OPEN)
				return;
		} else if (s->state == OPEN) {
			if (!on_frame(s) || s->state != OPEN)
				return;
		} else {
			return;
		}
		if ((size_t)n < room) /* a short read: the socket is drained */
			return;
	}
}

static void on_event(struct session *s, uint32_t events)
{
	if (s->state == CONNECTING) {
		int err = 0;
		socklen_t len = sizeof err;
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
			fail(s, &st.io_errors);
			return;
		}
		if (!(events & EPOLLOUT))
			return;
		s->state = UPGRADING;
		if (!flush(s))
			return;
	}
	if ((events & EPOLLOUT) && s->state != DEAD && !flush(s))
		return;
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && s->state != DEAD)
		on_readable(s);
}

static int parse_addr(const char *a)
{
	char host[64];
	const char *colon = strrchr(a, ':');
	if (colon == NULL || colon == a || (size_t)(colon - a) >= sizeof host)
		return -1;
	char *endp;
	long port = strtol(colon + 1, &endp, 10);
	if (*endp || port < 1 || port > 65535)
		return -1;
	memcpy(host, a, (size_t)(colon - a));
	host[colon - a] = 0;
	memset(&cfg.addr, 0, sizeof cfg.addr);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&cfg.addr;
		host[strlen(host) - 1] = 0;
		if (inet_pton(AF_INET6, host + 1, &sa->sin6_addr) != 1 || !IN6_IS_ADDR_LOOPBACK(&sa->sin6_addr))
			return -1;
		sa->sin6_family = AF_INET6;
		sa->sin6_port = htons((uint16_t)port);
		cfg.addrlen = sizeof *sa;
	} else {
		struct sockaddr_in *sa = (struct sockaddr_in *)&cfg.addr;
		if (inet_pton(AF_INET, host, &sa->sin_addr) != 1 || (ntohl(sa->sin_addr.s_addr) >> 24) != 127)
			return -1;
		sa->sin_family = AF_INET;
		sa->sin_port = htons((uint16_t)port);
		cfg.addrlen = sizeof *sa;
	}
	snprintf(cfg.host, sizeof cfg.host, "%s", a);
	return 0;
}

static int cookie_ok(const char *c)
{
	size_t n = strlen(c);
	if (n == 0 || n > MAX_COOKIE_LEN)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (c[i] < 0x20 || c[i] > 0x7e)
			return 0;
	return 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: wsgen -a 127.0.0.1:PORT [-s sessions (1..%d, 32)] [-m message bytes (1..%d, 256)]\n"
		"             [-d seconds (0.1..3600, 5)] [-t echo timeout seconds (0.1..60, 10)] [-k cookie]...\n",
		MAX_SESSIONS, MAX_MSG_BYTES);
	exit(2);
}

int main(int argc, char **argv)
{
	int opt, have_addr = 0;
	char *endp;
	while ((opt = getopt(argc, argv, "a:s:m:d:t:k:")) != -1) {
		switch (opt) {
		case 'a':
			if (parse_addr(optarg) < 0) {
				fprintf(stderr, "wsgen: -a %s: want a loopback host:port (127.x.x.x or [::1])\n", optarg);
				exit(2);
			}
			have_addr = 1;
			break;
		case 's':
			cfg.sessions = (int)strtol(optarg, &endp, 10);
			if (*endp || cfg.sessions < 1 || cfg.sessions > MAX_SESSIONS)
				usage();
			break;
		case 'm': {
			long m = strtol(optarg, &endp, 10);
			if (*endp || m < 1 || m > MAX_MSG_BYTES)
				usage();
			cfg.msg_bytes = (size_t)m;
			break;
		}
		case 'd':
			cfg.duration_s = strtod(optarg, &endp);
			if (*endp || !(cfg.duration_s >= 0.1 && cfg.duration_s <= 3600))
				usage();
			break;
		case 't':
			cfg.timeout_s = strtod(optarg, &endp);
			if (*endp || !(cfg.timeout_s >= 0.1 && cfg.timeout_s <= 60))
				usage();
			break;
		case 'k':
			if (cfg.ncookies == MAX_COOKIES || !cookie_ok(optarg)) {
				fprintf(stderr, "wsgen: -k: at most %d printable cookies of at most %d bytes\n", MAX_COOKIES, MAX_COOKIE_LEN);
				exit(2);
			}
			cfg.cookies[cfg.ncookies++] = optarg;
			break;
		default:
			usage();
		}
	}
	if (!have_addr || optind != argc)
		usage();

	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (rlim_t)cfg.sessions + 16 > rl.rlim_cur) {
		fprintf(stderr, "wsgen: -s %d: over the open-files limit %llu\n", cfg.sessions, (unsigned long long)rl.rlim_cur);
		exit(2);
	}
	signal(SIGPIPE, SIG_IGN);
	rng = (uint32_t)now_ns() ^ ((uint32_t)getpid() << 16) ^ 0x9e3779b9u;
	if (rng == 0)
		rng = 1;
	pattern = malloc(cfg.msg_bytes);
	struct session *ss = sessions = calloc((size_t)cfg.sessions, sizeof *ss);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (pattern == NULL || ss == NULL || ep < 0) {
		perror("wsgen: setup");
		exit(1);
	}
	for (size_t i = 0; i < cfg.msg_bytes; i++)
		pattern[i] = (unsigned char)('a' + i % 26);

	uint64_t start = now_ns();
	uint64_t timeout_ns = (uint64_t)(cfg.timeout_s * 1e9);
	end_ns = start + (uint64_t)(cfg.duration_s * 1e9);
	for (int i = 0; i < cfg.sessions; i++) {
		struct session *s = &ss[i];
		s->idx = i;
		s->fd = -1;
		s->wcap = cfg.msg_bytes + 14 > 1024 + MAX_COOKIE_LEN ? cfg.msg_bytes + 14 : 1024 + MAX_COOKIE_LEN;
		s->rcap = cfg.msg_bytes + 14 > HEAD_BYTES ? cfg.msg_bytes + 14 : HEAD_BYTES;
		s->wbuf = malloc(s->wcap);
		s->rbuf = malloc(s->rcap);
		if (s->wbuf == NULL || s->rbuf == NULL) {
			perror("wsgen: setup");
			exit(1);
		}
		open_session(s);
	}

	struct epoll_event evs[256];
	uint64_t next_scan = start;
	for (uint64_t t = start; t < end_ns; t = now_ns()) {
		int wait_ms = (int)((end_ns - t) / 1000000) + 1;
		if (wait_ms > 100)
			wait_ms = 100;
		int n = epoll_wait(ep, evs, 256, wait_ms);
		if (n < 0 && errno != EINTR) {
			perror("wsgen: epoll_wait");
			break;
		}
		for (int i = 0; i < n; i++) {
			struct session *s = &sessions[(uint32_t)evs[i].data.u64];
			if (s->fd >= 0 && tag(s) == evs[i].data.u64) /* not a closed socket's */
				on_event(s, evs[i].events);
		}
		if ((t = now_ns()) >= next_scan) { /* sessions with no answer in time */
			next_scan = t + 100000000u;
			for (int i = 0; i < cfg.sessions; i++) {
				struct session *s = &ss[i];
				if (s->state != DEAD && t - s->since_ns > timeout_ns && t < end_ns)
					fail(s, &st.timeouts);
			}
		}
	}
	double elapsed = (double)(now_ns() - start) / 1e9;
	for (int i = 0; i < cfg.sessions; i++)
		if (ss[i].fd >= 0)
			close(ss[i].fd);
	printf("wsgen sessions=%d msg_bytes=%zu elapsed_s=%.3f connected=%llu messages=%llu rate=%.1f "
		"p50_us=%llu p90_us=%llu p99_us=%llu max_us=%llu upgrade_errors=%llu io_errors=%llu "
		"bad_frames=%llu timeouts=%llu reconnects=%llu\n",
		cfg.sessions, cfg.msg_bytes, elapsed, (unsigned long long)st.connected,
		(unsigned long long)st.messages, (double)st.messages / elapsed,
		(unsigned long long)percentile(0.50), (unsigned long long)percentile(0.90),
		(unsigned long long)percentile(0.99), (unsigned long long)st.max_us,
		(unsigned long long)st.upgrade_errors, (unsigned long long)st.io_errors,
		(unsigned long long)st.bad_frames, (unsigned long long)st.timeouts,
		(unsigned long long)st.reconnects);
	return 0;
}
