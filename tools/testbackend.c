/*
 * testbackend: the deterministic HTTP/1.1 origin server behind kage in its
 * integration tests, benchmarks and demo. Every behaviour is chosen by the
 * request target, so a test or a wrk script needs no configuration; the
 * routes and parameters are documented in the --help text (usage_text below).
 *
 * Design, and why:
 * - epoll, not io_uring: the backend must not share kage's ring code, so a
 *   bug there cannot hide on both sides of a test.
 * - N worker threads, each with its own SO_REUSEPORT listener and epoll set;
 *   a connection lives and dies on the thread that accepted it. The only
 *   cross-thread data are the read-only options and body pattern, the
 *   connection id counter and the per-thread statistics (relaxed atomics,
 *   written by the owner, summed by whoever serves /__count).
 * - Edge-triggered sockets registered once for in, out and rdhup: no
 *   epoll_ctl per request. A short read or write means the kernel buffer was
 *   drained or filled, so the next edge is awaited without an EAGAIN probe.
 * - Requests are parsed with llhttp (strict), paused at each message end so
 *   pipelined requests are answered strictly in order, one response built at
 *   a time. Responses are a list of segments (offsets into the connection's
 *   output buffer, or pointers into read-only memory such as the shared body
 *   pattern) written with writev; long bodies are produced lazily so memory
 *   per connection stays bounded whatever the size asked for.
 * - Timers (?delay, lingering close, --idle-timeout) sit in a per-thread
 *   binary heap that sets the epoll_wait timeout.
 */
#include "llhttp.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static const char usage_text[] =
"usage: testbackend [OPTIONS]\n"
"\n"
"A deterministic HTTP/1.0 and 1.1 test origin for kage. Behaviour is chosen\n"
"by the request target; every response carries Date, X-Backend: NAME and\n"
"(except /__count and /__reset) X-Request-Count: N (per thread).\n"
"\n"
"Options:\n"
"  --listen HOST:PORT   address to listen on (default 127.0.0.1:0; port 0\n"
"                       picks a free port). Also :PORT and [V6]:PORT.\n"
"  --threads N          worker threads, each with its own SO_REUSEPORT\n"
"                       listener (default 1)\n"
"  --name NAME          value of the X-Backend response header (default backend)\n"
"  --variant N          0 (default) normal; on /json paths whose last numeric\n"
"                       segment is odd: 1 = user.name gets an \"e\" appended\n"
"                       (\"Ann\" -> \"Anne\"), 2 = user.nickname is added,\n"
"                       3 = user.email is removed. Nothing else changes.\n"
"  --port-file PATH     write the bound port there (tmp file + rename)\n"
"  --record PATH        append each request's raw bytes as a JSON line\n"
"                       {\"conn\":N,\"seq\":M,\"raw\":\"<base64>\"} (conn and seq\n"
"                       count from 1); extra members: \"error\":REASON for a\n"
"                       request answered 4xx/5xx for malformation,\n"
"                       \"incomplete\":true for one cut off by a close,\n"
"                       \"truncated\":true and \"raw_len\":N past 16 MiB\n"
"  --idle-timeout MS    close keep-alive connections idle this long\n"
"                       (default 0: never)\n"
"  --delay-ms MS        answer every request after MS milliseconds, as if\n"
"                       it carried ?delay=MS (its own ?delay wins;\n"
"                       /__count and /__reset are answered at once;\n"
"                       default 0)\n"
"  --quiet              only errors on stderr\n"
"  --help               this text\n"
"\n"
"The line \"listening on HOST:PORT\" is always printed on stderr once the\n"
"listeners are bound. SIGTERM or SIGINT exits 0.\n"
"\n"
"Routes (by path; any method):\n"
"  /size/N              N bytes of the pattern \"abc...xyz0123456789\\n\"\n"
"                       repeated, text/plain (N up to 2^40)\n"
"  /json[/...]          a JSON document derived from the path (0.5 to 4 KiB):\n"
"                       {\"path\",\"id\" (last numeric segment, or null),\n"
"                       \"user\":{\"id\",\"name\",\"email\",\"roles\",\"active\"},\n"
"                       \"items\":[...],\"count\"}, application/json\n"
"  /echo[/...]          JSON describing the request as received:\n"
"                       {\"method\",\"target\",\"version\",\"headers\":[[name,value],\n"
"                       ...] (arrival order, original case),\"trailers\" (if\n"
"                       any),\"body_len\",\"body_b64\"}; bodies beyond 8 MiB are\n"
"                       counted but not kept (\"body_truncated\":true)\n"
"  /ws                  with Upgrade: websocket and Connection: Upgrade (GET,\n"
"                       HTTP/1.1): 101 Switching Protocols (with\n"
"                       Sec-WebSocket-Accept when a key was sent), then every\n"
"                       byte received is echoed back unchanged until the peer\n"
"                       closes; without them: 426\n"
"  /__count             {\"requests\":N,\"connections\":M} since start or the\n"
"                       last /__reset, over all threads; requests exclude\n"
"                       /__count and /__reset, connections exclude those\n"
"                       whose first request is one of them\n"
"  /__reset             zeroes those counters\n"
"  anything else        \"ok METHOD TARGET\\n\", text/plain\n"
"\n"
"Query parameters (combine freely; unknown ones are ignored; booleans take\n"
"1/true/yes or 0/false/no, or no value for true):\n"
"  size=N               body of the /size route on any path\n"
"  json=1               body of the /json route on any path\n"
"  json_size=N          pad the JSON items array to about N bytes (max 16 MiB)\n"
"  noise=1              JSON gets \"ts\" (ISO time, microseconds) and\n"
"                       \"request_id\" (UUIDv4), different on every response\n"
"  chunked=1            Transfer-Encoding: chunked (ignored for HTTP/1.0)\n"
"  chunk=N              chunk size, default 1024\n"
"  trailer=1            chunked responses end with trailer X-Trailer: done\n"
"                       (announced by Trailer: X-Trailer)\n"
"  gzip=1               gzip the body, Content-Encoding: gzip (body max 16 MiB)\n"
"  status=N             status code (101 or 200..999); 204, 304 and HEAD\n"
"                       responses carry no body. status=101 answers 101 and\n"
"                       switches to raw echo like /ws, whatever was asked\n"
"  header=Name:Value    add a response header (repeatable, up to 64;\n"
"                       %XX escapes, + is a space)\n"
"  delay=MS             answer after MS milliseconds (max 3600000); other\n"
"                       connections are served meanwhile\n"
"  close=1              close-delimited: no Content-Length or chunked,\n"
"                       Connection: close, body, then close\n"
"  reset=STAGE          reset the connection (RST): before (no response\n"
"                       byte), headers (after the header block), body (after\n"
"                       half the body)\n"
"  hang=1               read the request, never answer, close when the peer does\n"
"  garbage=1            status line \"HTTP/1.1 2x0 OK\", then close\n"
"  bad_framing=STAGE    cl_te: Content-Length and chunked together; two_cl:\n"
"                       two different Content-Lengths; bad_chunk: chunk size\n"
"                       \"zz\"; short: Content-Length announces the whole body\n"
"                       but only the first half is sent (size=0 announces 1);\n"
"                       those four then close. long: after the announced body\n"
"                       come the bytes of a smuggled response\n"
"                       (\"HTTP/1.1 200 OK\\r\\nContent-Length: 8\\r\\n\n"
"                       X-Smuggled: 1\\r\\n\\r\\nsmuggled\"), connection kept\n"
"  no_continue=1        do not answer Expect: 100-continue with\n"
"                       \"HTTP/1.1 100 Continue\" (sent by default before the\n"
"                       body is read)\n"
"\n"
"Requests: HTTP/1.0 (keep-alive only with Connection: keep-alive) and 1.1,\n"
"pipelining, bodies by Content-Length or chunked. Refused as kage refuses\n"
"them, each answer followed by a close: 400 for malformed requests (bare CR\n"
"or LF, obs-folded header lines, invalid names or values, no version, an\n"
"HTTP/1.1 request without exactly one Host, Content-Length with\n"
"Transfer-Encoding, chunked not last or twice, bad chunk sizes); 501 for\n"
"another transfer coding or CONNECT; 505 for versions other than 1.0 and\n"
"1.1; 414/431 for a target or header block over 64 KiB or over 256 header\n"
"lines. The body says why.\n";

/* ---- limits -------------------------------------------------------------- */

#define RBUF_SIZE       (16u * 1024)            /* input buffer per connection */
#define HEAD_MAX        (64u * 1024)            /* target + header bytes */
#define HEADERS_MAX     256u
#define ECHO_MAX        (8u << 20)              /* request body kept for /echo */
#define RAW_MAX         (16u << 20)             /* raw bytes kept for --record */
#define OUT_HIGH        (256u * 1024)           /* pipelining: stop parsing above */
#define SEG_HIGH        256u
#define PROD_SEGS       512u                    /* per producer fill */
#define PROD_BYTES      (4u << 20)
#define BUF_KEEP        (1u << 20)              /* larger idle buffers are freed */
#define PAT_LEN         37u                     /* strlen(pattern_unit) */
#define PAT_SPAN        (16u << 20)             /* contiguous bytes from any phase */
#define PAT_ALLOC       (((PAT_SPAN + PAT_LEN) / PAT_LEN + 1) * PAT_LEN)
#define SIZE_LIMIT      (1ull << 40)
#define JSON_LIMIT      (16u << 20)
#define GZIP_LIMIT      (16u << 20)
#define CHUNK_LIMIT     (16u << 20)
#define DELAY_LIMIT     3600000u
#define EXTRA_HDRS_MAX  64u
#define PARAM_VALUE_MAX 8192u
#define LINGER_NS       (5 * NS_PER_SEC)
#define ACCEPT_PAUSE_NS (100 * NS_PER_MSEC)
#define FREE_CONNS_MAX  256u
#define GZ_CACHE_MAX    64u
#define GZ_CACHE_BYTES  (32u << 20)
#define EVENTS_MAX      256
#define THREADS_MAX     256

static const char pattern_unit[] = "abcdefghijklmnopqrstuvwxyz0123456789\n";

/* ---- options and shared read-only state ---------------------------------- */

struct options {
	const char *listen;
	int threads;
	const char *name;
	int variant;
	const char *port_file;
	const char *record;
	int64_t idle_ns;
	uint32_t delay_ms;	/* --delay-ms: for requests without ?delay */
	bool quiet;
};

static struct options opt = {
	.listen = "127.0.0.1:0",
	.threads = 1,
	.name = "backend",
};

static char *pattern;                   /* PAT_ALLOC bytes, read-only once built */
static char backend_hdr[160];           /* "X-Backend: NAME\r\n" */
static size_t backend_hdr_len;
static int record_fd = -1;
static llhttp_settings_t parser_settings;
static _Atomic uint64_t conn_ids;

/* Per-thread counters: written by the owning thread only; /__reset moves the
 * bases instead of zeroing, so a reset never races an increment. */
struct tstats {
	_Atomic int64_t requests;
	_Atomic int64_t connections;
	_Atomic int64_t req_base;
	_Atomic int64_t conn_base;
} CACHE_ALIGNED;

static struct tstats *stats;
static int nstats;

/* ---- growable byte buffer with a sticky out-of-memory flag --------------- */

/* Appends never fail loudly: the flag is checked once per response built. */
struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

static bool buf_reserve(struct buf *b, size_t extra)
{
	if (b->oom)
		return false;
	if (b->cap - b->len >= extra)
		return true;
	size_t want = b->len + extra, cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void buf_put(struct buf *b, const void *s, size_t n)
{
	if (n && buf_reserve(b, n)) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
	}
}

#define buf_lit(b, s) buf_put((b), (s), sizeof(s) - 1)

static void buf_putc(struct buf *b, char ch)
{
	if (buf_reserve(b, 1))
		b->p[b->len++] = ch;
}

static void buf_puts(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

static void buf_put_u64(struct buf *b, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof tmp;
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	buf_put(b, tmp + i, sizeof tmp - i);
}

static void buf_put_i64(struct buf *b, int64_t v)
{
	if (v < 0) {
		buf_putc(b, '-');
		buf_put_u64(b, (uint64_t)0 - (uint64_t)v);
	} else {
		buf_put_u64(b, (uint64_t)v);
	}
}

/* An empty buffer that grew past BUF_KEEP is given back, so one huge response
 * does not pin memory on a connection that goes on serving small ones. */
static void buf_trim(struct buf *b)
{
	if (b->len == 0 && b->cap > BUF_KEEP) {
		free(b->p);
		b->p = NULL;
		b->cap = 0;
	}
	b->oom = false;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

/* ---- encodings ----------------------------------------------------------- */

static const char b64_chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void buf_put_base64(struct buf *b, const unsigned char *s, size_t n)
{
	if (!buf_reserve(b, (n + 2) / 3 * 4))
		return;
	char *o = b->p + b->len;
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		*o++ = b64_chars[v >> 18];
		*o++ = b64_chars[(v >> 12) & 63];
		*o++ = b64_chars[(v >> 6) & 63];
		*o++ = b64_chars[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)s[i] << 16;
		*o++ = b64_chars[v >> 18];
		*o++ = b64_chars[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
		*o++ = b64_chars[v >> 18];
		*o++ = b64_chars[(v >> 12) & 63];
		*o++ = b64_chars[(v >> 6) & 63];
		*o++ = '=';
	}
	b->len = (size_t)(o - b->p);
}

/* Length of the valid UTF-8 sequence at s, or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c0 = s[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c0 >= 0xc2 && c0 <= 0xdf)
		len = 2;
	else if (c0 >= 0xe0 && c0 <= 0xef) {
		len = 3;
		if (c0 == 0xe0)
			lo = 0xa0;
		if (c0 == 0xed)
			hi = 0x9f;
	} else if (c0 >= 0xf0 && c0 <= 0xf4) {
		len = 4;
		if (c0 == 0xf0)
			lo = 0x90;
		if (c0 == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/* A JSON string. Valid UTF-8 passes through; any other byte becomes the code
 * point of the same value (\u00XX), so the document always parses. */
static void buf_put_json_str(struct buf *b, const char *str, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str;
	buf_putc(b, '"');
	size_t run = 0; /* plain bytes not yet copied, ending at i */
	for (size_t i = 0; i < n;) {
		unsigned char ch = s[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
			i++;
			run++;
			continue;
		}
		if (ch >= 0x80) {
			size_t k = utf8_seq(s + i, n - i);
			if (k) {
				i += k;
				run += k;
				continue;
			}
		}
		buf_put(b, s + i - run, run);
		run = 0;
		char esc[6] = { '\\', 0 };
		switch (ch) {
		case '"':  esc[1] = '"';  buf_put(b, esc, 2); break;
		case '\\': esc[1] = '\\'; buf_put(b, esc, 2); break;
		case '\n': esc[1] = 'n';  buf_put(b, esc, 2); break;
		case '\r': esc[1] = 'r';  buf_put(b, esc, 2); break;
		case '\t': esc[1] = 't';  buf_put(b, esc, 2); break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[ch >> 4];
			esc[5] = hex[ch & 15];
			buf_put(b, esc, 6);
		}
		i++;
	}
	buf_put(b, s + n - run, run);
	buf_putc(b, '"');
}

/* SHA-1 (FIPS 180-4), only for Sec-WebSocket-Accept. */
static uint32_t rol32(uint32_t x, int n)
{
	return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const unsigned char *p)
{
	uint32_t w[80];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 80; i++)
		w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
	for (int i = 0; i < 80; i++) {
		uint32_t f, k;
		if (i < 20) {
			f = (b & c) | (~b & d);
			k = 0x5a827999;
		} else if (i < 40) {
			f = b ^ c ^ d;
			k = 0x6ed9eba1;
		} else if (i < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8f1bbcdc;
		} else {
			f = b ^ c ^ d;
			k = 0xca62c1d6;
		}
		uint32_t t = rol32(a, 5) + f + e + k + w[i];
		e = d;
		d = c;
		c = rol32(b, 30);
		b = a;
		a = t;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
}

static void sha1(const unsigned char *msg, size_t n, unsigned char out[20])
{
	uint32_t h[5] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0 };
	size_t i = 0;
	for (; i + 64 <= n; i += 64)
		sha1_block(h, msg + i);
	unsigned char tail[128] = { 0 };
	size_t rest = n - i, tlen = rest + 9 <= 64 ? 64 : 128;
	memcpy(tail, msg + i, rest);
	tail[rest] = 0x80;
	uint64_t bits = (uint64_t)n * 8;
	for (int j = 0; j < 8; j++)
		tail[tlen - 1 - (size_t)j] = (unsigned char)(bits >> (8 * j));
	sha1_block(h, tail);
	if (tlen == 128)
		sha1_block(h, tail + 64);
	for (int j = 0; j < 5; j++) {
		out[4 * j] = (unsigned char)(h[j] >> 24);
		out[4 * j + 1] = (unsigned char)(h[j] >> 16);
		out[4 * j + 2] = (unsigned char)(h[j] >> 8);
		out[4 * j + 3] = (unsigned char)h[j];
	}
}

/* ---- request representation ---------------------------------------------- */

enum route {
	ROUTE_DEFAULT,
	ROUTE_SIZE,
	ROUTE_JSON,
	ROUTE_ECHO,
	ROUTE_WS,
	ROUTE_COUNT,
	ROUTE_RESET,
};

enum reset_stage { RESET_NONE, RESET_BEFORE, RESET_HEADERS, RESET_BODY };

enum bad_framing { BAD_NONE, BAD_CL_TE, BAD_TWO_CL, BAD_CHUNK, BAD_SHORT, BAD_LONG };

/* What the query string asked for, validated when the headers end. */
struct params {
	uint64_t size;
	uint64_t json_size;
	uint32_t chunk;
	uint32_t delay_ms;
	int status;
	uint8_t reset;
	uint8_t bad;
	uint8_t nextra;         /* header= parameters */
	bool has_size, json, noise, chunked, trailer, close, hang, gzip, garbage;
	bool no_continue;
};

/* Offsets into the connection's head buffer. */
struct hdr {
	uint32_t name_off, name_len, val_off, val_len;
};

enum hdr_state { HS_NONE, HS_FIELD, HS_VALUE };

struct request {
	struct params q;
	uint64_t body_len;
	int64_t count;          /* X-Request-Count */
	uint32_t url_len;
	uint32_t path_off, path_len;
	uint32_t query_off, query_len;
	uint32_t nhdr, nhdr_main; /* nhdr_main: before the trailers */
	uint32_t ws_key;        /* index + 1 of Sec-WebSocket-Key, or 0 */
	int err_status;         /* set by a callback that refuses the request */
	const char *err_reason;
	uint8_t route;
	uint8_t method;
	uint8_t minor;
	uint8_t hstate;
	uint8_t ver_len;
	char ver[3];            /* the version as sent, "1.1" (or its start) */
	bool started, headers_done, complete, keep_alive, head, ws_ok;
};

/* ---- connection ---------------------------------------------------------- */

enum conn_mode { MODE_HTTP, MODE_HANG, MODE_ECHO, MODE_LINGER };

enum after { AFTER_NONE, AFTER_CLOSE, AFTER_RESET, AFTER_ECHO };

/* One piece of output: ref != NULL points at stable memory, else off indexes
 * the output buffer (which may move when it grows). */
struct seg {
	const char *ref;
	size_t off;
	size_t len;
};

struct outq {
	struct buf b;
	struct seg *segs;
	unsigned nseg, cap, head;
	size_t head_off;        /* bytes of segs[head] already written */
	size_t pending;         /* bytes queued, not yet written */
	bool oom;
};

enum src_kind { SRC_PATTERN, SRC_OBUF, SRC_REF };

/* A body sent lazily, a bounded batch of segments at a time. */
struct producer {
	const char *ref;        /* SRC_REF */
	size_t off;             /* SRC_OBUF */
	uint64_t pos, stop, total;
	uint32_t chunk;         /* 0: not chunked */
	const char *suffix;
	size_t suffix_len;
	uint8_t kind;
	uint8_t hdr_len, last_len;
	bool active, trailer;
	char hdr[24];           /* size line of a full chunk */
	char last[24];          /* size line of the final short chunk */
};

struct worker;

enum fold_state { FOLD_START, FOLD_LINE, FOLD_LF, FOLD_DONE };

struct conn {
	int fd;
	uint8_t mode, after;
	uint8_t fold;           /* enum fold_state, for the current header section */
	bool readable, writable, rdhup, peer_eof, closing, waiting;
	uint64_t id, seq;
	size_t heap_idx;
	int64_t when_ns, last_io_ns;
	struct conn *prev, *next;
	struct worker *w;
	llhttp_t parser;
	struct request req;
	struct producer prod;
	/* kept across connections when the struct is recycled */
	char *rbuf;
	size_t rpos, rlen;
	struct buf head;        /* request target and header bytes */
	struct hdr *hdrs;
	uint32_t hdr_cap;
	struct buf body;        /* request body, for /echo only */
	struct buf raw;         /* raw request bytes, for --record */
	uint64_t raw_total;
	struct outq out;
};

#define HEAP_NONE SIZE_MAX

struct gz_entry {
	uint64_t size;
	char *data;
	size_t len;
};

struct worker {
	int idx;
	pthread_t tid;
	int ep, lfd, stopfd;
	char ltag, stag;        /* their addresses tag epoll events */
	bool stop, accept_paused;
	int64_t now_ns, accept_resume_ns;
	struct tstats *st;
	time_t date_sec;
	size_t date_len;
	char date_hdr[64];
	struct conn **heap;
	size_t nheap, heap_cap;
	struct conn *live, *free_list;
	unsigned nfree;
	struct buf scratch;     /* record lines */
	z_stream z;
	bool z_ready;
	struct gz_entry gz[GZ_CACHE_MAX];
	unsigned ngz;
	size_t gz_bytes;
	uint64_t rng;
};

static void conn_run(struct worker *w, struct conn *c);
static void conn_close(struct worker *w, struct conn *c, bool reset);

/* ---- statistics ---------------------------------------------------------- */

static int64_t stat_get(_Atomic int64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

/* Owner-only counters: a plain load and store, no locked instruction. */
static int64_t stat_add(_Atomic int64_t *v, int64_t d)
{
	int64_t n = stat_get(v) + d;
	atomic_store_explicit(v, n, memory_order_relaxed);
	return n;
}

static void stats_sum(int64_t *requests, int64_t *connections)
{
	int64_t r = 0, k = 0;
	for (int i = 0; i < nstats; i++) {
		int64_t dr = stat_get(&stats[i].requests) - stat_get(&stats[i].req_base);
		int64_t dk = stat_get(&stats[i].connections) - stat_get(&stats[i].conn_base);
		r += dr > 0 ? dr : 0;
		k += dk > 0 ? dk : 0;
	}
	*requests = r;
	*connections = k;
}

static void stats_reset(void)
{
	for (int i = 0; i < nstats; i++) {
		atomic_store_explicit(&stats[i].req_base, stat_get(&stats[i].requests),
				      memory_order_relaxed);
		atomic_store_explicit(&stats[i].conn_base, stat_get(&stats[i].connections),
				      memory_order_relaxed);
	}
}

/* ---- clocks -------------------------------------------------------------- */

static int64_t mono_ns(void)
{
	return now_ns();
}

static void date_refresh(struct worker *w)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	if (ts.tv_sec == w->date_sec)
		return;
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(w->date_hdr, sizeof w->date_hdr,
			 "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
			 days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
			 tm.tm_hour, tm.tm_min, tm.tm_sec);
	w->date_len = n > 0 ? (size_t)n : 0;
	w->date_sec = ts.tv_sec;
}

static void worker_clock(struct worker *w)
{
	w->now_ns = mono_ns();
	date_refresh(w);
}

static uint64_t rng_next(struct worker *w)
{
	/* xorshift64*: the noise fields need variety, not secrecy */
	uint64_t x = w->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rng = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* ---- timer heap ---------------------------------------------------------- */

static void heap_swap(struct worker *w, size_t i, size_t j)
{
	struct conn *t = w->heap[i];
	w->heap[i] = w->heap[j];
	w->heap[j] = t;
	w->heap[i]->heap_idx = i;
	w->heap[j]->heap_idx = j;
}

static void heap_up(struct worker *w, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (w->heap[p]->when_ns <= w->heap[i]->when_ns)
			break;
		heap_swap(w, i, p);
		i = p;
	}
}

static void heap_down(struct worker *w, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < w->nheap && w->heap[l]->when_ns < w->heap[m]->when_ns)
			m = l;
		if (r < w->nheap && w->heap[r]->when_ns < w->heap[m]->when_ns)
			m = r;
		if (m == i)
			return;
		heap_swap(w, i, m);
		i = m;
	}
}

static void timer_del(struct worker *w, struct conn *c)
{
	size_t i = c->heap_idx;
	if (i == HEAP_NONE)
		return;
	c->heap_idx = HEAP_NONE;
	w->nheap--;
	if (i == w->nheap)
		return;
	w->heap[i] = w->heap[w->nheap];
	w->heap[i]->heap_idx = i;
	heap_up(w, i);
	heap_down(w, w->heap[i]->heap_idx);
}

/* One deadline per connection; what it means depends on the state when it
 * fires (conn_timer). Returns false when out of memory. */
static bool timer_set(struct worker *w, struct conn *c, int64_t when)
{
	if (c->heap_idx != HEAP_NONE) {
		c->when_ns = when;
		heap_up(w, c->heap_idx);
		heap_down(w, c->heap_idx);
		return true;
	}
	if (w->nheap == w->heap_cap) {
		size_t cap = w->heap_cap ? w->heap_cap * 2 : 64;
		struct conn **h = realloc(w->heap, cap * sizeof *h);
		if (!h)
			return false;
		w->heap = h;
		w->heap_cap = cap;
	}
	c->when_ns = when;
	c->heap_idx = w->nheap;
	w->heap[w->nheap++] = c;
	heap_up(w, c->heap_idx);
	return true;
}

static int timers_timeout_ms(struct worker *w)
{
	int64_t next = INT64_MAX;
	if (w->nheap)
		next = w->heap[0]->when_ns;
	if (w->accept_paused && w->accept_resume_ns < next)
		next = w->accept_resume_ns;
	if (next == INT64_MAX)
		return -1;
	int64_t d = next - w->now_ns;
	if (d <= 0)
		return 0;
	d = (d + NS_PER_MSEC - 1) / NS_PER_MSEC; /* never early */
	return d > INT32_MAX ? INT32_MAX : (int)d;
}

/* ---- output queue -------------------------------------------------------- */

static bool seg_push(struct outq *o, const char *ref, size_t off, size_t len)
{
	if (len == 0)
		return true;
	if (o->nseg == o->cap) {
		unsigned cap = o->cap ? o->cap * 2 : 16;
		struct seg *s = realloc(o->segs, cap * sizeof *s);
		if (!s) {
			o->oom = true;
			return false;
		}
		o->segs = s;
		o->cap = cap;
	}
	o->segs[o->nseg++] = (struct seg){ ref, off, len };
	o->pending += len;
	return true;
}

static void out_ref(struct outq *o, const char *ref, size_t len)
{
	seg_push(o, ref, 0, len);
}

/* The bytes appended to the output buffer since off. */
static void out_from(struct outq *o, size_t off)
{
	seg_push(o, NULL, off, o->b.len - off);
}

static bool out_pending(const struct outq *o)
{
	return o->head < o->nseg;
}

/* 0: all written; 1: the socket is full; -1: the connection is gone. */
static int out_flush(struct conn *c)
{
	struct outq *o = &c->out;
	while (o->head < o->nseg) {
		struct iovec iov[64];
		int n = 0;
		size_t want = 0;
		for (unsigned i = o->head; i < o->nseg && n < 64; i++, n++) {
			const struct seg *s = &o->segs[i];
			const char *base = s->ref ? s->ref : o->b.p + s->off;
			size_t skip = i == o->head ? o->head_off : 0;
			iov[n].iov_base = (void *)(uintptr_t)(base + skip);
			iov[n].iov_len = s->len - skip;
			want += s->len - skip;
		}
		ssize_t wr = writev(c->fd, iov, n);
		if (wr < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				c->writable = false;
				return 1;
			}
			return -1;
		}
		size_t left = (size_t)wr;
		o->pending -= left;
		while (left) {
			struct seg *s = &o->segs[o->head];
			size_t rem = s->len - o->head_off;
			if (left < rem) {
				o->head_off += left;
				break;
			}
			left -= rem;
			o->head++;
			o->head_off = 0;
		}
		if ((size_t)wr < want) {
			c->writable = false;
			return 1;
		}
	}
	return 0;
}

/* Called once everything queued is written. */
static void out_reset(struct conn *c)
{
	struct outq *o = &c->out;
	o->nseg = o->head = 0;
	o->head_off = 0;
	o->pending = 0;
	if (!(c->prod.active && c->prod.kind == SRC_OBUF)) {
		o->b.len = 0;
		buf_trim(&o->b);
	}
}

/* ---- body producer ------------------------------------------------------- */

static size_t hex_line(char *dst, uint64_t v)
{
	static const char hex[] = "0123456789abcdef";
	char tmp[20];
	size_t i = sizeof tmp;
	do {
		tmp[--i] = hex[v & 15];
		v >>= 4;
	} while (v);
	size_t n = sizeof tmp - i;
	memcpy(dst, tmp + i, n);
	dst[n] = '\r';
	dst[n + 1] = '\n';
	return n + 2;
}

/* Queue body bytes [pos, pos + n). */
static void prod_emit(struct conn *c, uint64_t pos, uint64_t n)
{
	struct producer *pr = &c->prod;
	struct outq *o = &c->out;
	while (n) {
		uint64_t piece = n;
		switch (pr->kind) {
		case SRC_PATTERN: {
			size_t phase = (size_t)(pos % PAT_LEN);
			piece = MIN(n, (uint64_t)(PAT_ALLOC - phase));
			out_ref(o, pattern + phase, (size_t)piece);
			break;
		}
		case SRC_OBUF:
			seg_push(o, NULL, pr->off + (size_t)pos, (size_t)n);
			break;
		default:
			out_ref(o, pr->ref + pos, (size_t)n);
		}
		pos += piece;
		n -= piece;
	}
}

static void prod_fill(struct conn *c)
{
	static const char crlf[] = "\r\n";
	static const char last_chunk[] = "0\r\n\r\n";
	static const char last_trailer[] = "0\r\nX-Trailer: done\r\n\r\n";
	struct producer *pr = &c->prod;
	struct outq *o = &c->out;
	while (pr->active && o->nseg - o->head < PROD_SEGS && o->pending < PROD_BYTES && !o->oom) {
		if (pr->pos < pr->stop) {
			if (!pr->chunk) {
				uint64_t n = MIN(pr->stop - pr->pos, (uint64_t)PAT_SPAN);
				prod_emit(c, pr->pos, n);
				pr->pos += n;
				continue;
			}
			uint64_t n = MIN((uint64_t)pr->chunk, pr->total - pr->pos);
			if (n == pr->chunk)
				out_ref(o, pr->hdr, pr->hdr_len);
			else
				out_ref(o, pr->last, pr->last_len);
			uint64_t d = MIN(n, pr->stop - pr->pos);
			prod_emit(c, pr->pos, d);
			pr->pos += d;
			if (d == n)
				out_ref(o, crlf, 2);
			continue;
		}
		if (pr->chunk && pr->stop == pr->total) {
			if (pr->trailer)
				out_ref(o, last_trailer, sizeof last_trailer - 1);
			else
				out_ref(o, last_chunk, sizeof last_chunk - 1);
		}
		out_ref(o, pr->suffix, pr->suffix_len);
		pr->active = false;
	}
}

/* ---- request parsing (llhttp callbacks) ---------------------------------- */

static void request_clear(struct conn *c)
{
	memset(&c->req, 0, sizeof c->req);
	c->head.len = 0;
	c->body.len = 0;
}

static int refuse(llhttp_t *p, struct conn *c, int status, const char *reason)
{
	c->req.err_status = status;
	c->req.err_reason = reason;
	llhttp_set_error_reason(p, reason);
	return HPE_USER;
}

static int head_add(llhttp_t *p, struct conn *c, const char *at, size_t len, int status)
{
	if (c->head.len + len > HEAD_MAX)
		return refuse(p, c, status, status == 414 ? "request target too long"
							  : "header block too large");
	buf_put(&c->head, at, len);
	if (c->head.oom)
		return refuse(p, c, 500, "out of memory");
	return 0;
}

static int on_message_begin(llhttp_t *p)
{
	struct conn *c = p->data;
	request_clear(c);
	c->req.started = true;
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	c->req.url_len += (uint32_t)len;
	return head_add(p, c, at, len, 414);
}

static int on_version(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	struct request *r = &c->req;
	size_t n = MIN(len, sizeof r->ver - r->ver_len);
	memcpy(r->ver + r->ver_len, at, n);
	r->ver_len = (uint8_t)(r->ver_len + n);
	return 0;
}

/* A well-formed version we do not speak (505), or a malformed line (400)? */
static bool version_unsupported(const struct request *r)
{
	if (r->ver_len != 3 || r->ver[1] != '.' || r->ver[0] < '0' || r->ver[0] > '9' ||
	    r->ver[2] < '0' || r->ver[2] > '9')
		return false;
	return !(r->ver[0] == '1' && (r->ver[2] == '0' || r->ver[2] == '1'));
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	struct request *r = &c->req;
	if (r->hstate != HS_FIELD) {
		if (r->nhdr == HEADERS_MAX)
			return refuse(p, c, 431, "too many header lines");
		if (r->nhdr == c->hdr_cap) {
			uint32_t cap = c->hdr_cap ? c->hdr_cap * 2 : 32;
			struct hdr *h = realloc(c->hdrs, cap * sizeof *h);
			if (!h)
				return refuse(p, c, 500, "out of memory");
			c->hdrs = h;
			c->hdr_cap = cap;
		}
		c->hdrs[r->nhdr++] = (struct hdr){ (uint32_t)c->head.len, 0, 0, 0 };
		r->hstate = HS_FIELD;
	}
	c->hdrs[r->nhdr - 1].name_len += (uint32_t)len;
	return head_add(p, c, at, len, 431);
}

static int on_header_field_complete(llhttp_t *p)
{
	struct conn *c = p->data;
	c->hdrs[c->req.nhdr - 1].val_off = (uint32_t)c->head.len;
	c->req.hstate = HS_VALUE;
	return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	c->hdrs[c->req.nhdr - 1].val_len += (uint32_t)len;
	return head_add(p, c, at, len, 431);
}

static bool hdr_name_is(const struct conn *c, const struct hdr *h, const char *lower)
{
	return span_is(c->head.p + h->name_off, h->name_len, lower);
}

/* Does the comma-separated header value contain the token (any case)? */
static bool value_has_token(const char *v, size_t n, const char *tok)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t s = i;
		while (i < n && v[i] != ',')
			i++;
		size_t e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e > s && span_is(v + s, e - s, tok))
			return true;
	}
	return false;
}

static bool parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
	if (n == 0 || n > 20)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

static int parse_bool(const char *s, size_t n)
{
	if (n == 0 || span_is(s, n, "1") || span_is(s, n, "true") || span_is(s, n, "yes"))
		return 1;
	if (span_is(s, n, "0") || span_is(s, n, "false") || span_is(s, n, "no"))
		return 0;
	return -1;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Query-value decoding (%XX, '+' is a space) into out (cap bytes). Returns
 * the decoded length, or -1 when malformed or too long. */
static long pct_decode(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '%') {
			int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
			int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return -1;
			ch = (char)(hi << 4 | lo);
			i += 2;
		} else if (ch == '+') {
			ch = ' ';
		}
		if (o == cap)
			return -1;
		out[o++] = ch;
	}
	return (long)o;
}

static bool is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Splits a decoded "Name:Value" into a valid field name and value, the value
 * trimmed of surrounding whitespace. */
static bool extra_header_split(const char *s, size_t n, size_t *name_len, size_t *val_off,
			       size_t *val_len)
{
	const char *colon = memchr(s, ':', n);
	if (!colon || colon == s)
		return false;
	size_t nl = (size_t)(colon - s);
	for (size_t i = 0; i < nl; i++)
		if (!is_tchar((unsigned char)s[i]))
			return false;
	size_t b = nl + 1, e = n;
	while (b < e && (s[b] == ' ' || s[b] == '\t'))
		b++;
	while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t'))
		e--;
	for (size_t i = b; i < e; i++) {
		unsigned char ch = (unsigned char)s[i];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return false;
	}
	*name_len = nl;
	*val_off = b;
	*val_len = e - b;
	return true;
}

static bool param_flag(bool *dst, const char *v, size_t vn)
{
	int b = parse_bool(v, vn);
	if (b < 0)
		return false;
	*dst = b;
	return true;
}

/* Applies one key=value of the query. Returns the error text or NULL. */
static const char *param_apply(struct params *q, const char *k, size_t kn, const char *v, size_t vn)
{
	uint64_t n;
	if (span_is(k, kn, "size")) {
		if (!parse_u64(v, vn, SIZE_LIMIT, &q->size))
			return "bad size";
		q->has_size = true;
	} else if (span_is(k, kn, "json")) {
		if (!param_flag(&q->json, v, vn))
			return "bad json";
	} else if (span_is(k, kn, "json_size")) {
		if (!parse_u64(v, vn, JSON_LIMIT, &q->json_size))
			return "bad json_size";
	} else if (span_is(k, kn, "noise")) {
		if (!param_flag(&q->noise, v, vn))
			return "bad noise";
	} else if (span_is(k, kn, "chunked")) {
		if (!param_flag(&q->chunked, v, vn))
			return "bad chunked";
	} else if (span_is(k, kn, "chunk")) {
		if (!parse_u64(v, vn, CHUNK_LIMIT, &n) || n == 0)
			return "bad chunk";
		q->chunk = (uint32_t)n;
	} else if (span_is(k, kn, "trailer")) {
		if (!param_flag(&q->trailer, v, vn))
			return "bad trailer";
	} else if (span_is(k, kn, "delay")) {
		if (!parse_u64(v, vn, DELAY_LIMIT, &n))
			return "bad delay";
		q->delay_ms = (uint32_t)n;
	} else if (span_is(k, kn, "close")) {
		if (!param_flag(&q->close, v, vn))
			return "bad close";
	} else if (span_is(k, kn, "reset")) {
		if (span_is(v, vn, "before"))
			q->reset = RESET_BEFORE;
		else if (span_is(v, vn, "headers"))
			q->reset = RESET_HEADERS;
		else if (span_is(v, vn, "body"))
			q->reset = RESET_BODY;
		else
			return "bad reset (before, headers or body)";
	} else if (span_is(k, kn, "hang")) {
		if (!param_flag(&q->hang, v, vn))
			return "bad hang";
	} else if (span_is(k, kn, "status")) {
		if (!parse_u64(v, vn, 999, &n) || n < 100)
			return "bad status";
		if (n < 200 && n != 101)
			return "status 1xx other than 101 not supported";
		q->status = (int)n;
	} else if (span_is(k, kn, "gzip")) {
		if (!param_flag(&q->gzip, v, vn))
			return "bad gzip";
	} else if (span_is(k, kn, "header")) {
		char tmp[PARAM_VALUE_MAX];
		long dn = pct_decode(v, vn, tmp, sizeof tmp);
		size_t nl, vo, vl;
		if (dn < 0 || !extra_header_split(tmp, (size_t)dn, &nl, &vo, &vl))
			return "bad header (Name:Value)";
		if (q->nextra == EXTRA_HDRS_MAX)
			return "too many header parameters";
		q->nextra++;
	} else if (span_is(k, kn, "garbage")) {
		if (!param_flag(&q->garbage, v, vn))
			return "bad garbage";
	} else if (span_is(k, kn, "bad_framing")) {
		if (span_is(v, vn, "cl_te"))
			q->bad = BAD_CL_TE;
		else if (span_is(v, vn, "two_cl"))
			q->bad = BAD_TWO_CL;
		else if (span_is(v, vn, "bad_chunk"))
			q->bad = BAD_CHUNK;
		else if (span_is(v, vn, "short"))
			q->bad = BAD_SHORT;
		else if (span_is(v, vn, "long"))
			q->bad = BAD_LONG;
		else
			return "bad bad_framing (cl_te, two_cl, bad_chunk, short or long)";
	} else if (span_is(k, kn, "no_continue")) {
		if (!param_flag(&q->no_continue, v, vn))
			return "bad no_continue";
	}
	return NULL;
}

/* Calls fn for each key=value of the query string. */
static const char *query_each(const char *s, size_t n, struct params *q)
{
	size_t i = 0;
	while (i < n) {
		size_t b = i;
		while (i < n && s[i] != '&')
			i++;
		const char *k = s + b, *eq = memchr(k, '=', i - b);
		size_t kn = eq ? (size_t)(eq - k) : i - b;
		const char *v = eq ? eq + 1 : k + kn;
		size_t vn = (size_t)(s + i - v);
		if (kn) {
			const char *err = param_apply(q, k, kn, v, vn);
			if (err)
				return err;
		}
		i++;
	}
	return NULL;
}

static bool path_is_dir(const char *p, size_t n, const char *dir)
{
	size_t d = strlen(dir);
	return n >= d && memcmp(p, dir, d) == 0 && (n == d || p[d] == '/');
}

/* Splits the target into path and query and picks the route. */
static const char *target_parse(struct conn *c)
{
	struct request *r = &c->req;
	const char *t = c->head.p;
	size_t n = r->url_len, ps = 0;
	if (n && t[0] != '/') {
		/* absolute-form: skip scheme and authority */
		const char *sep = n >= 3 ? memmem(t, n, "://", 3) : NULL;
		if (sep) {
			size_t a = (size_t)(sep - t) + 3;
			while (a < n && t[a] != '/' && t[a] != '?')
				a++;
			ps = a;
		}
	}
	size_t pe = ps;
	while (pe < n && t[pe] != '?' && t[pe] != '#')
		pe++;
	r->path_off = (uint32_t)ps;
	r->path_len = (uint32_t)(pe - ps);
	size_t qe = pe;
	if (pe < n && t[pe] == '?') {
		qe = pe + 1;
		while (qe < n && t[qe] != '#')
			qe++;
		r->query_off = (uint32_t)pe + 1;
		r->query_len = (uint32_t)(qe - pe - 1);
	}
	const char *err = query_each(t + r->query_off, r->query_len, &r->q);
	if (err)
		return err;

	const char *p = t + ps;
	size_t pn = pe - ps;
	if (path_is_dir(p, pn, "/echo"))
		r->route = ROUTE_ECHO;
	else if (span_is(p, pn, "/ws"))
		r->route = ROUTE_WS;
	else if (span_is(p, pn, "/__count"))
		r->route = ROUTE_COUNT;
	else if (span_is(p, pn, "/__reset"))
		r->route = ROUTE_RESET;
	else if (path_is_dir(p, pn, "/json") || r->q.json)
		r->route = ROUTE_JSON;
	else if (pn > 6 && memcmp(p, "/size/", 6) == 0) {
		if (!parse_u64(p + 6, pn - 6, SIZE_LIMIT, &r->q.size))
			return "bad /size/N";
		r->route = ROUTE_SIZE;
	} else if (r->q.has_size)
		r->route = ROUTE_SIZE;
	if (r->q.gzip && r->route == ROUTE_SIZE && r->q.size > GZIP_LIMIT)
		return "gzip body over 16 MiB";
	if (!r->q.chunk)
		r->q.chunk = 1024;
	return NULL;
}

/* The transfer codings of a request, over all its Transfer-Encoding lines. */
struct te_seen {
	unsigned codings, chunked;
	bool last_chunked;
};

static void te_scan(struct te_seen *t, const char *v, size_t n)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t s = i;
		while (i < n && v[i] != ',' && v[i] != ';')
			i++;
		size_t e = i;
		while (i < n && v[i] != ',')
			i++; /* parameters */
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e == s)
			continue;
		t->codings++;
		t->last_chunked = span_is(v + s, e - s, "chunked");
		t->chunked += t->last_chunked;
	}
}

static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

static int on_headers_complete(llhttp_t *p)
{
	struct conn *c = p->data;
	struct request *r = &c->req;
	r->headers_done = true;
	r->nhdr_main = r->nhdr;
	r->hstate = HS_NONE;
	r->method = p->method;
	r->minor = p->http_minor;
	r->head = p->method == HTTP_HEAD;
	if (!r->ver_len) /* llhttp takes "GET /" for HTTP/0.9 */
		return refuse(p, c, 400, "request line without a version");
	if (p->http_major != 1 || p->http_minor > 1)
		return refuse(p, c, 505, "HTTP version not supported");
	if (p->method == HTTP_CONNECT)
		return refuse(p, c, 501, "CONNECT not supported");
	unsigned hosts = 0;
	bool expect = false, ws = false;
	struct te_seen te = { 0 };
	for (uint32_t i = 0; i < r->nhdr; i++) {
		const struct hdr *h = &c->hdrs[i];
		const char *v = c->head.p + h->val_off;
		if (hdr_name_is(c, h, "host"))
			hosts++;
		else if (hdr_name_is(c, h, "expect"))
			expect = span_is(v, h->val_len, "100-continue");
		else if (hdr_name_is(c, h, "upgrade"))
			ws = value_has_token(v, h->val_len, "websocket");
		else if (hdr_name_is(c, h, "sec-websocket-key"))
			r->ws_key = i + 1;
		else if (hdr_name_is(c, h, "transfer-encoding"))
			te_scan(&te, v, h->val_len);
	}
	/* as kage answers (RFC 9112 6.3): the length is unknowable unless
	 * chunked comes last, once; a coding before it we could not undo */
	if (te.codings && (!te.last_chunked || te.chunked > 1))
		return refuse(p, c, 400, "chunked not the last transfer coding, or twice");
	if (te.codings > te.chunked)
		return refuse(p, c, 501, "transfer coding other than chunked");
	if (r->minor == 1 && hosts != 1)
		return refuse(p, c, 400, hosts ? "duplicate Host" : "missing Host");
	const char *err = target_parse(c);
	if (err)
		return refuse(p, c, 400, err);
	r->ws_ok = r->route == ROUTE_WS && ws && p->upgrade && r->minor == 1 &&
		   p->method == HTTP_GET;
	bool has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
	if (expect && r->minor == 1 && has_body && !r->q.no_continue)
		out_ref(&c->out, continue_line, sizeof continue_line - 1);
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	struct conn *c = p->data;
	c->req.body_len += len;
	if (c->req.route == ROUTE_ECHO && c->body.len < ECHO_MAX) {
		buf_put(&c->body, at, MIN(len, ECHO_MAX - c->body.len));
		if (c->body.oom)
			return refuse(p, c, 500, "out of memory");
	}
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	struct conn *c = p->data;
	c->req.complete = true;
	c->req.keep_alive = llhttp_should_keep_alive(p);
	/* one request at a time: the loop answers it, then resets the parser */
	return HPE_PAUSED;
}

static void parser_settings_init(void)
{
	llhttp_settings_init(&parser_settings);
	parser_settings.on_message_begin = on_message_begin;
	parser_settings.on_url = on_url;
	parser_settings.on_version = on_version;
	parser_settings.on_header_field = on_header_field;
	parser_settings.on_header_field_complete = on_header_field_complete;
	parser_settings.on_header_value = on_header_value;
	parser_settings.on_headers_complete = on_headers_complete;
	parser_settings.on_body = on_body;
	parser_settings.on_message_complete = on_message_complete;
}

/* ---- --record ------------------------------------------------------------ */

static void raw_add(struct conn *c, const char *p, size_t n)
{
	if (record_fd < 0 || n == 0)
		return;
	c->raw_total += n;
	if (c->raw.len < RAW_MAX)
		buf_put(&c->raw, p, MIN(n, RAW_MAX - c->raw.len));
}

static void record_write(struct worker *w, struct conn *c, const char *error, bool incomplete)
{
	if (record_fd < 0)
		return;
	struct buf *b = &w->scratch;
	b->len = 0;
	buf_lit(b, "{\"conn\":");
	buf_put_u64(b, c->id);
	buf_lit(b, ",\"seq\":");
	buf_put_u64(b, c->seq);
	buf_lit(b, ",\"raw\":\"");
	buf_put_base64(b, (const unsigned char *)c->raw.p, c->raw.len);
	buf_putc(b, '"');
	if (c->raw_total > c->raw.len) {
		buf_lit(b, ",\"raw_len\":");
		buf_put_u64(b, c->raw_total);
		buf_lit(b, ",\"truncated\":true");
	}
	if (error) {
		buf_lit(b, ",\"error\":");
		buf_put_json_str(b, error, strlen(error));
	}
	if (incomplete)
		buf_lit(b, ",\"incomplete\":true");
	buf_lit(b, "}\n");
	if (b->oom) {
		log_warn("record: out of memory, request %" PRIu64 "/%" PRIu64 " not recorded",
			 c->id, c->seq);
	} else {
		/* O_APPEND: one write per line keeps lines from threads whole */
		size_t off = 0;
		while (off < b->len) {
			ssize_t n = write(record_fd, b->p + off, b->len - off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				log_warn("record: write: %s", strerror(errno));
				break;
			}
			off += (size_t)n;
		}
	}
	b->len = 0;
	buf_trim(b);
	c->raw.len = 0;
	c->raw_total = 0;
	buf_trim(&c->raw);
}

/* ---- response bodies ----------------------------------------------------- */

struct body {
	uint8_t kind;           /* enum src_kind */
	const char *ref;
	size_t off;
	uint64_t len;
	const char *ctype;
	bool gzip;
};

static const char *const person_names[] = { "Ann", "Bob", "Cleo", "Dmitri",
					    "Eve", "Farid", "Grace", "Hiro" };
static const char *const role_names[] = { "admin", "dev", "ops", "qa", "support" };

static uint32_t fnv1a(const char *s, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

static uint32_t mix32(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

/* The last path segment made only of digits, if any. */
static bool path_last_id(const char *p, size_t n, uint64_t *id)
{
	bool found = false;
	size_t i = 0;
	while (i < n) {
		while (i < n && p[i] == '/')
			i++;
		size_t s = i;
		while (i < n && p[i] != '/')
			i++;
		uint64_t v;
		if (i > s && parse_u64(p + s, i - s, UINT64_MAX, &v)) {
			*id = v;
			found = true;
		}
	}
	return found;
}

static void put_lower(struct buf *b, const char *s)
{
	for (; *s; s++)
		buf_putc(b, (char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s));
}

static void put_timestamp(struct buf *b)
{
	struct timespec ts;
	struct tm tm;
	char tmp[40];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000);
	buf_put(b, tmp, n > 0 ? (size_t)n : 0);
}

static void put_uuid4(struct worker *w, struct buf *b)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char u[16];
	uint64_t a = rng_next(w), z = rng_next(w);
	memcpy(u, &a, 8);
	memcpy(u + 8, &z, 8);
	u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);
	u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
	char s[36];
	size_t o = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			s[o++] = '-';
		s[o++] = hex[u[i] >> 4];
		s[o++] = hex[u[i] & 15];
	}
	buf_put(b, s, sizeof s);
}

static void json_item(struct buf *b, uint64_t key, uint32_t h, uint32_t k)
{
	uint32_t m = mix32(h ^ (k * 0x9e3779b1u));
	buf_lit(b, "{\"id\":");
	buf_put_u64(b, k);
	buf_lit(b, ",\"sku\":\"SKU-");
	buf_put_u64(b, key);
	buf_putc(b, '-');
	buf_put_u64(b, k);
	buf_lit(b, "\",\"name\":\"Item ");
	buf_put_u64(b, k);
	buf_lit(b, "\",\"qty\":");
	buf_put_u64(b, m % 9 + 1);
	buf_lit(b, ",\"price\":");
	uint32_t cents = (m >> 8) % 100000;
	buf_put_u64(b, cents / 100);
	buf_putc(b, '.');
	buf_putc(b, (char)('0' + cents % 100 / 10));
	buf_putc(b, (char)('0' + cents % 10));
	buf_lit(b, ",\"tags\":[\"t");
	buf_put_u64(b, (m >> 4) % 16);
	buf_lit(b, "\",\"t");
	buf_put_u64(b, (m >> 12) % 16 + 16);
	buf_lit(b, "\"]}");
}

/* The /json document: a function of the path (and --variant, ?json_size,
 * ?noise) only, so master and shadow agree unless told otherwise. */
static void json_make(struct worker *w, struct conn *c, struct buf *b)
{
	const struct request *r = &c->req;
	const char *path = c->head.p + r->path_off;
	size_t pn = r->path_len;
	uint64_t id = 0;
	bool has_id = path_last_id(path, pn, &id);
	uint32_t h = fnv1a(path, pn);
	uint64_t key = has_id ? id : h % 1000;
	bool odd = has_id && (id & 1);
	/* by id / 2, so an odd id and the even one below share a name:
	 * /json/users/1 is Ann, and with --variant 1 Anne */
	const char *name = person_names[(key / 2) % ARRAY_SIZE(person_names)];
	size_t start = b->len;

	buf_lit(b, "{\"path\":");
	buf_put_json_str(b, path, pn);
	buf_lit(b, ",\"id\":");
	if (has_id)
		buf_put_u64(b, id);
	else
		buf_lit(b, "null");
	if (r->q.noise) {
		buf_lit(b, ",\"ts\":\"");
		put_timestamp(b);
		buf_lit(b, "\",\"request_id\":\"");
		put_uuid4(w, b);
		buf_putc(b, '"');
	}
	buf_lit(b, ",\"user\":{\"id\":");
	buf_put_u64(b, key);
	buf_lit(b, ",\"name\":\"");
	buf_puts(b, name);
	if (opt.variant == 1 && odd)
		buf_putc(b, 'e');
	buf_putc(b, '"');
	if (!(opt.variant == 3 && odd)) {
		buf_lit(b, ",\"email\":\"");
		put_lower(b, name);
		buf_lit(b, "@example.com\"");
	}
	if (opt.variant == 2 && odd) {
		buf_lit(b, ",\"nickname\":\"");
		put_lower(b, name);
		buf_lit(b, "y\"");
	}
	buf_lit(b, ",\"roles\":[");
	uint32_t roles = (h >> 3) % 31 + 1; /* a non-empty subset */
	bool first = true;
	for (unsigned i = 0; i < ARRAY_SIZE(role_names); i++) {
		if (!(roles & (1u << i)))
			continue;
		if (!first)
			buf_putc(b, ',');
		first = false;
		buf_putc(b, '"');
		buf_puts(b, role_names[i]);
		buf_putc(b, '"');
	}
	buf_lit(b, "],\"active\":");
	if (key % 3)
		buf_lit(b, "true");
	else
		buf_lit(b, "false");
	buf_lit(b, "},\"items\":[");
	uint32_t nitems = 4 + h % 13, k = 0;
	for (;;) {
		if (k >= nitems && (b->len - start + 24 >= r->q.json_size || b->oom))
			break;
		if (k)
			buf_putc(b, ',');
		json_item(b, key, h, ++k);
	}
	buf_lit(b, "],\"count\":");
	buf_put_u64(b, k);
	buf_putc(b, '}');
}

static void echo_make(struct conn *c, struct buf *b)
{
	const struct request *r = &c->req;
	const char *method = llhttp_method_name((llhttp_method_t)r->method);
	buf_lit(b, "{\"method\":");
	buf_put_json_str(b, method, strlen(method));
	buf_lit(b, ",\"target\":");
	buf_put_json_str(b, c->head.p, r->url_len);
	buf_lit(b, ",\"version\":\"1.");
	buf_putc(b, (char)('0' + r->minor));
	buf_lit(b, "\",\"headers\":[");
	for (uint32_t i = 0; i < r->nhdr; i++) {
		const struct hdr *h = &c->hdrs[i];
		if (i == r->nhdr_main)
			buf_lit(b, "],\"trailers\":[");
		else if (i)
			buf_putc(b, ',');
		buf_putc(b, '[');
		buf_put_json_str(b, c->head.p + h->name_off, h->name_len);
		buf_putc(b, ',');
		buf_put_json_str(b, c->head.p + h->val_off, h->val_len);
		buf_putc(b, ']');
	}
	buf_lit(b, "],\"body_len\":");
	buf_put_u64(b, r->body_len);
	buf_lit(b, ",\"body_b64\":\"");
	buf_put_base64(b, (const unsigned char *)c->body.p, c->body.len);
	buf_putc(b, '"');
	if (r->body_len > c->body.len)
		buf_lit(b, ",\"body_truncated\":true");
	buf_putc(b, '}');
}

static void count_make(struct buf *b)
{
	int64_t requests, connections;
	stats_sum(&requests, &connections);
	buf_lit(b, "{\"requests\":");
	buf_put_i64(b, requests);
	buf_lit(b, ",\"connections\":");
	buf_put_i64(b, connections);
	buf_putc(b, '}');
}

static void text_make(struct conn *c, struct buf *b)
{
	const struct request *r = &c->req;
	const char *method = llhttp_method_name((llhttp_method_t)r->method);
	buf_lit(b, "ok ");
	buf_puts(b, method);
	buf_putc(b, ' ');
	buf_put(b, c->head.p, r->url_len);
	buf_putc(b, '\n');
}

static bool gzip_ready(struct worker *w)
{
	if (w->z_ready)
		return true;
	memset(&w->z, 0, sizeof w->z);
	/* 15 + 16: gzip wrapper; zlib writes mtime 0, so output is reproducible */
	if (deflateInit2(&w->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return false;
	w->z_ready = true;
	return true;
}

/* Compresses n bytes (at src, or at the output buffer offset src_off when src
 * is NULL) to dst, which is reserved first. Returns the compressed length. */
static bool gzip_into(struct worker *w, struct buf *dst, const char *src, size_t src_off,
		      size_t n, size_t *out_len)
{
	if (!gzip_ready(w) || deflateReset(&w->z) != Z_OK)
		return false;
	size_t bound = deflateBound(&w->z, (uLong)n);
	if (!buf_reserve(dst, bound))
		return false;
	if (!src)
		src = dst->p + src_off; /* after the reserve: it may have moved */
	w->z.next_in = (Bytef *)(uintptr_t)src;
	w->z.avail_in = (uInt)n;
	w->z.next_out = (Bytef *)(dst->p + dst->len);
	w->z.avail_out = (uInt)bound;
	if (deflate(&w->z, Z_FINISH) != Z_STREAM_END)
		return false;
	*out_len = bound - w->z.avail_out;
	dst->len += *out_len;
	return true;
}

/* gzip of a pattern body: kept per thread, never freed while running, so
 * responses may point into it. */
static bool gzip_pattern(struct worker *w, struct conn *c, struct body *bd)
{
	for (unsigned i = 0; i < w->ngz; i++) {
		if (w->gz[i].size == bd->len) {
			bd->kind = SRC_REF;
			bd->ref = w->gz[i].data;
			bd->len = w->gz[i].len;
			return true;
		}
	}
	struct buf tmp = { 0 };
	size_t glen;
	if (!gzip_into(w, &tmp, pattern, 0, (size_t)bd->len, &glen)) {
		buf_free(&tmp);
		return false;
	}
	if (w->ngz < GZ_CACHE_MAX && w->gz_bytes + glen <= GZ_CACHE_BYTES) {
		w->gz[w->ngz++] = (struct gz_entry){ bd->len, tmp.p, glen };
		w->gz_bytes += glen;
		bd->kind = SRC_REF;
		bd->ref = tmp.p;
		bd->len = glen;
		return true;
	}
	bd->kind = SRC_OBUF;
	bd->off = c->out.b.len;
	buf_put(&c->out.b, tmp.p, glen);
	bd->len = glen;
	buf_free(&tmp);
	return !c->out.b.oom;
}

static bool body_gzip(struct worker *w, struct conn *c, struct body *bd)
{
	bd->gzip = true;
	if (bd->kind == SRC_PATTERN)
		return gzip_pattern(w, c, bd);
	struct buf *b = &c->out.b;
	size_t off = b->len, glen;
	if (!gzip_into(w, b, NULL, bd->off, (size_t)bd->len, &glen))
		return false;
	bd->off = off;
	bd->len = glen;
	return true;
}

/* Builds (or points at) the body of the current request's response. */
static bool body_make(struct worker *w, struct conn *c, struct body *bd)
{
	struct request *r = &c->req;
	struct buf *b = &c->out.b;
	memset(bd, 0, sizeof *bd);
	bd->kind = SRC_OBUF;
	bd->off = b->len;
	bd->ctype = "text/plain";
	switch (r->route) {
	case ROUTE_SIZE:
		bd->kind = SRC_PATTERN;
		bd->len = r->q.size;
		break;
	case ROUTE_JSON:
		json_make(w, c, b);
		bd->ctype = "application/json";
		break;
	case ROUTE_ECHO:
		echo_make(c, b);
		bd->ctype = "application/json";
		break;
	case ROUTE_COUNT:
	case ROUTE_RESET:
		count_make(b);
		bd->ctype = "application/json";
		break;
	case ROUTE_WS:
		buf_lit(b, "websocket upgrade required\n");
		break;
	default:
		text_make(c, b);
	}
	if (bd->kind == SRC_OBUF)
		bd->len = b->len - bd->off;
	if (b->oom)
		return false;
	if (r->q.gzip)
		return body_gzip(w, c, bd);
	return true;
}

/* ---- response head ------------------------------------------------------- */

static const char *status_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 203: return "Non-Authoritative Information";
	case 204: return "No Content";
	case 205: return "Reset Content";
	case 206: return "Partial Content";
	case 300: return "Multiple Choices";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 407: return "Proxy Authentication Required";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 418: return "I'm a teapot";
	case 421: return "Misdirected Request";
	case 422: return "Unprocessable Content";
	case 425: return "Too Early";
	case 426: return "Upgrade Required";
	case 428: return "Precondition Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 451: return "Unavailable For Legal Reasons";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	case 507: return "Insufficient Storage";
	case 508: return "Loop Detected";
	case 511: return "Network Authentication Required";
	default:  return "Unknown";
	}
}

static void head_status(struct buf *b, int status)
{
	if (status == 200) {
		buf_lit(b, "HTTP/1.1 200 OK\r\n");
		return;
	}
	buf_lit(b, "HTTP/1.1 ");
	buf_put_u64(b, (uint64_t)status);
	buf_putc(b, ' ');
	buf_puts(b, status_reason(status));
	buf_lit(b, "\r\n");
}

/* Date, X-Backend and (unless left out) X-Request-Count. */
static void head_common(struct worker *w, struct conn *c, struct buf *b, bool count)
{
	buf_put(b, w->date_hdr, w->date_len);
	buf_put(b, backend_hdr, backend_hdr_len);
	if (count) {
		buf_lit(b, "X-Request-Count: ");
		buf_put_i64(b, c->req.count);
		buf_lit(b, "\r\n");
	}
}

/* The header= parameters, validated when the request arrived. */
static void head_extra(struct conn *c, struct buf *b)
{
	const struct request *r = &c->req;
	if (!r->q.nextra)
		return;
	const char *s = c->head.p + r->query_off;
	size_t n = r->query_len, i = 0;
	while (i < n) {
		size_t st = i;
		while (i < n && s[i] != '&')
			i++;
		if (i - st > 7 && memcmp(s + st, "header=", 7) == 0) {
			char tmp[PARAM_VALUE_MAX];
			long dn = pct_decode(s + st + 7, i - st - 7, tmp, sizeof tmp);
			size_t nl, vo, vl;
			if (dn >= 0 && extra_header_split(tmp, (size_t)dn, &nl, &vo, &vl)) {
				buf_put(b, tmp, nl);
				buf_lit(b, ": ");
				buf_put(b, tmp + vo, vl);
				buf_lit(b, "\r\n");
			}
		}
		i++;
	}
}

static void head_length(struct buf *b, uint64_t len)
{
	buf_lit(b, "Content-Length: ");
	buf_put_u64(b, len);
	buf_lit(b, "\r\n");
}

/* ---- responses ----------------------------------------------------------- */

static void request_reset(struct conn *c)
{
	request_clear(c);
	buf_trim(&c->body);
	buf_trim(&c->head);
	llhttp_reset(&c->parser);
	c->fold = FOLD_START;
}

static void prod_start(struct conn *c, const struct body *bd, uint64_t stop, uint32_t chunk,
		       bool trailer, const char *suffix, size_t suffix_len)
{
	struct producer *pr = &c->prod;
	memset(pr, 0, sizeof *pr);
	pr->active = true;
	pr->kind = bd->kind;
	pr->ref = bd->ref;
	pr->off = bd->off;
	pr->total = bd->len;
	pr->stop = stop;
	pr->chunk = chunk;
	pr->trailer = trailer;
	pr->suffix = suffix;
	pr->suffix_len = suffix_len;
	if (chunk) {
		pr->hdr_len = (uint8_t)hex_line(pr->hdr, chunk);
		pr->last_len = (uint8_t)hex_line(pr->last, bd->len % chunk);
	}
	prod_fill(c);
}

static void respond_switch(struct worker *w, struct conn *c)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	struct request *r = &c->req;
	struct buf *b = &c->out.b;
	size_t off = b->len;
	head_status(b, 101);
	head_common(w, c, b, true);
	buf_lit(b, "Upgrade: websocket\r\nConnection: Upgrade\r\n");
	if (r->ws_key) {
		const struct hdr *h = &c->hdrs[r->ws_key - 1];
		unsigned char msg[256 + sizeof guid], digest[20];
		size_t kn = MIN((size_t)h->val_len, (size_t)256);
		memcpy(msg, c->head.p + h->val_off, kn);
		memcpy(msg + kn, guid, sizeof guid - 1);
		sha1(msg, kn + sizeof guid - 1, digest);
		buf_lit(b, "Sec-WebSocket-Accept: ");
		buf_put_base64(b, digest, sizeof digest);
		buf_lit(b, "\r\n");
	}
	head_extra(c, b);
	buf_lit(b, "\r\n");
	out_from(&c->out, off);
	c->after = AFTER_ECHO;
	c->closing = true;
}

/* bad_framing=long: what a proxy that reuses the connection would take for
 * the next response */
static const char smuggled[] =
	"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Smuggled: 1\r\n\r\nsmuggled";
static const char bad_chunk_line[] = "zz\r\n";

/* Queues the answer to c->req, whatever it asked for. */
static void respond(struct worker *w, struct conn *c)
{
	struct request *r = &c->req;
	const struct params *q = &r->q;
	struct outq *o = &c->out;
	struct buf *b = &o->b;
	int status = q->status ? q->status : 200;

	if (q->reset == RESET_BEFORE) {
		c->after = AFTER_RESET;
		c->closing = true;
		return;
	}
	if (status == 101 || (r->route == ROUTE_WS && r->ws_ok)) {
		respond_switch(w, c);
		return;
	}
	if (r->route == ROUTE_WS)
		status = 426;
	if (r->route == ROUTE_RESET)
		stats_reset(); /* when answered, so ?delay holds the reset back too */

	struct body bd;
	if (!body_make(w, c, &bd)) {
		o->oom = true;
		return;
	}
	bool no_content = status == 204 || status == 304;
	bool bodyless = no_content || r->head;
	bool chunked = q->chunked && r->minor == 1 && !q->close;
	uint8_t bad = q->bad;
	if (bad == BAD_CL_TE || bad == BAD_CHUNK)
		chunked = true;

	enum after after = AFTER_NONE;
	if (!r->keep_alive || q->close || q->garbage ||
	    (bad != BAD_NONE && bad != BAD_LONG))
		after = AFTER_CLOSE;
	if (q->reset == RESET_HEADERS || q->reset == RESET_BODY)
		after = AFTER_RESET;

	size_t off = b->len;
	if (q->garbage)
		buf_lit(b, "HTTP/1.1 2x0 OK\r\n");
	else
		head_status(b, status);
	head_common(w, c, b, r->route != ROUTE_COUNT && r->route != ROUTE_RESET);
	if (!no_content) {
		buf_lit(b, "Content-Type: ");
		buf_puts(b, bd.ctype);
		buf_lit(b, "\r\n");
		if (bd.gzip)
			buf_lit(b, "Content-Encoding: gzip\r\n");
		if (bad == BAD_SHORT)
			head_length(b, bd.len ? bd.len : 1);
		else if (bad == BAD_TWO_CL) {
			head_length(b, bd.len);
			head_length(b, bd.len + 1);
		} else if (bad == BAD_CL_TE)
			head_length(b, bd.len);
		else if (!chunked && !q->close)
			head_length(b, bd.len);
		if (chunked) {
			buf_lit(b, "Transfer-Encoding: chunked\r\n");
			if (q->trailer)
				buf_lit(b, "Trailer: X-Trailer\r\n");
		}
	}
	if (after == AFTER_CLOSE)
		buf_lit(b, "Connection: close\r\n");
	else if (r->minor == 0 && after == AFTER_NONE)
		buf_lit(b, "Connection: keep-alive\r\n");
	head_extra(c, b);
	buf_lit(b, "\r\n");
	out_from(o, off);

	if (!bodyless && q->reset != RESET_HEADERS) {
		uint64_t stop = bd.len;
		if (q->reset == RESET_BODY || bad == BAD_SHORT)
			stop = bd.len / 2;
		if (bad == BAD_CHUNK) {
			out_ref(o, bad_chunk_line, sizeof bad_chunk_line - 1);
			chunked = false;
		}
		prod_start(c, &bd, stop, chunked ? q->chunk : 0, chunked && q->trailer,
			   bad == BAD_LONG ? smuggled : NULL, bad == BAD_LONG ? sizeof smuggled - 1 : 0);
	}
	if (after != AFTER_NONE) {
		c->after = (uint8_t)after;
		c->closing = true;
	}
}

static void respond_error(struct worker *w, struct conn *c, int status, const char *reason)
{
	struct buf *b = &c->out.b;
	size_t boff = b->len;
	buf_put_u64(b, (uint64_t)status);
	buf_putc(b, ' ');
	buf_puts(b, status_reason(status));
	buf_lit(b, ": ");
	buf_puts(b, reason);
	buf_putc(b, '\n');
	size_t blen = b->len - boff, off = b->len;
	head_status(b, status);
	head_common(w, c, b, false);
	buf_lit(b, "Content-Type: text/plain\r\n");
	head_length(b, blen);
	buf_lit(b, "Connection: close\r\n\r\n");
	out_from(&c->out, off);
	seg_push(&c->out, NULL, boff, blen);
	c->after = AFTER_CLOSE;
	c->closing = true;
}

/* ---- request lifecycle --------------------------------------------------- */

static bool conn_idle_armed(void)
{
	return opt.idle_ns > 0;
}

static void request_done(struct worker *w, struct conn *c)
{
	struct request *r = &c->req;
	c->seq++;
	if (r->route == ROUTE_COUNT || r->route == ROUTE_RESET) {
		/* a connection opened just to read the counters does not count */
		if (c->seq == 1)
			stat_add(&w->st->connections, -1);
	} else {
		r->count = stat_add(&w->st->requests, 1);
	}
	record_write(w, c, NULL, false);
	if (r->q.hang) {
		c->mode = MODE_HANG;
		return;
	}
	uint32_t delay = r->q.delay_ms;
	if (!delay && r->route != ROUTE_COUNT && r->route != ROUTE_RESET)
		delay = opt.delay_ms;
	if (delay) {
		if (timer_set(w, c, w->now_ns + (int64_t)delay * NS_PER_MSEC)) {
			c->waiting = true;
			return;
		}
	}
	respond(w, c);
	request_reset(c);
}

static void request_fail(struct worker *w, struct conn *c, llhttp_errno_t e)
{
	struct request *r = &c->req;
	int status = r->err_status;
	const char *reason = r->err_reason;
	if (!status)
		status = e == HPE_INVALID_VERSION && version_unsupported(r) ? 505 : 400;
	if (!reason)
		reason = llhttp_get_error_reason(&c->parser);
	if (!reason)
		reason = llhttp_errno_name(e);
	c->seq++;
	record_write(w, c, reason, false);
	respond_error(w, c, status, reason);
	r->started = false;
}

/* llhttp 8 joins an obs-fold line (one starting with SP or HTAB) to the value
 * before it, which RFC 9112 5.2 allows; kage answers 400 instead, and so does
 * the backend, so tests can hold kage to it. A scan of the header section,
 * its state carried across reads, stopping at the blank line. */
static bool head_has_fold(struct conn *c, const char *p, size_t n)
{
	const char *end = p + n;
	while (p < end && c->fold != FOLD_DONE) {
		switch (c->fold) {
		case FOLD_START: /* llhttp skips empty lines before a request */
			if (*p != '\r' && *p != '\n')
				c->fold = FOLD_LINE;
			p++;
			break;
		case FOLD_LINE: {
			const char *lf = memchr(p, '\n', (size_t)(end - p));
			if (!lf)
				return false;
			c->fold = FOLD_LF;
			p = lf + 1;
			break;
		}
		default:
			if (*p == ' ' || *p == '\t')
				return true;
			c->fold = *p == '\r' || *p == '\n' ? FOLD_DONE : FOLD_LINE;
			p++;
		}
	}
	return false;
}

static bool conn_can_parse(const struct conn *c)
{
	return c->mode == MODE_HTTP && !c->closing && !c->waiting && !c->prod.active &&
	       c->out.b.len < OUT_HIGH && c->out.nseg - c->out.head < SEG_HIGH;
}

/* Feeds buffered input to the parser, answering each complete request. */
static void conn_parse(struct worker *w, struct conn *c)
{
	while (c->rpos < c->rlen && conn_can_parse(c)) {
		const char *p = c->rbuf + c->rpos;
		size_t n = c->rlen - c->rpos;
		if (head_has_fold(c, p, n)) {
			raw_add(c, p, n);
			c->rpos = c->rlen;
			c->req.err_status = 400;
			c->req.err_reason = "obs-fold in the header section";
			request_fail(w, c, HPE_USER);
			return;
		}
		llhttp_errno_t e = llhttp_execute(&c->parser, p, n);
		if (e == HPE_OK) {
			raw_add(c, p, n);
			c->rpos += n;
			continue;
		}
		if (e == HPE_PAUSED && c->req.complete) {
			const char *ep = llhttp_get_error_pos(&c->parser);
			size_t used = ep >= p && ep <= p + n ? (size_t)(ep - p) : n;
			raw_add(c, p, used);
			c->rpos += used;
			request_done(w, c);
			continue;
		}
		raw_add(c, p, n);
		c->rpos = c->rlen;
		request_fail(w, c, e);
		return;
	}
}

/* ---- connection modes after HTTP ----------------------------------------- */

/* Reads and drops input until the peer closes (hang, lingering close). */
static void drain_run(struct worker *w, struct conn *c)
{
	c->rpos = c->rlen = 0;
	if (c->peer_eof) {
		conn_close(w, c, false);
		return;
	}
	while (c->readable) {
		ssize_t n = read(c->fd, c->rbuf, RBUF_SIZE);
		if (n > 0) {
			if ((size_t)n < RBUF_SIZE && !c->rdhup)
				c->readable = false;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->readable = false;
			return;
		}
		conn_close(w, c, false);
		return;
	}
}

/* After 101: every byte read goes back unchanged. */
static void echo_run(struct worker *w, struct conn *c)
{
	for (;;) {
		if (c->rpos < c->rlen) {
			if (!c->writable)
				return;
			ssize_t n = write(c->fd, c->rbuf + c->rpos, c->rlen - c->rpos);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					c->writable = false;
					return;
				}
				conn_close(w, c, false);
				return;
			}
			c->rpos += (size_t)n;
			if (c->rpos < c->rlen) {
				c->writable = false;
				return;
			}
		}
		c->rpos = c->rlen = 0;
		if (c->peer_eof) {
			conn_close(w, c, false);
			return;
		}
		if (!c->readable)
			return;
		ssize_t n = read(c->fd, c->rbuf, RBUF_SIZE);
		if (n > 0) {
			c->rlen = (size_t)n;
			if ((size_t)n < RBUF_SIZE && !c->rdhup)
				c->readable = false;
		} else if (n == 0) {
			c->peer_eof = true;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			c->readable = false;
			return;
		} else if (errno != EINTR) {
			conn_close(w, c, false);
			return;
		}
	}
}

/* The last response is out: do what it asked for afterwards. */
static void conn_end(struct worker *w, struct conn *c)
{
	uint8_t after = c->after;
	c->after = AFTER_NONE;
	switch (after) {
	case AFTER_RESET:
		conn_close(w, c, true);
		return;
	case AFTER_ECHO:
		c->mode = MODE_ECHO;
		echo_run(w, c);
		return;
	default:
		if (c->peer_eof) {
			conn_close(w, c, false);
			return;
		}
		/* FIN first and read until the peer's: closing with unread input
		 * would send RST and could destroy the response in flight */
		shutdown(c->fd, SHUT_WR);
		c->mode = MODE_LINGER;
		if (!timer_set(w, c, w->now_ns + LINGER_NS)) {
			conn_close(w, c, false);
			return;
		}
		drain_run(w, c);
	}
}

/* ---- the connection loop ------------------------------------------------- */

static void conn_run(struct worker *w, struct conn *c)
{
	for (;;) {
		if (c->mode == MODE_LINGER || c->mode == MODE_HANG) {
			drain_run(w, c);
			return;
		}
		if (c->mode == MODE_ECHO) {
			echo_run(w, c);
			return;
		}
		conn_parse(w, c);
		if (c->out.oom || c->out.b.oom) {
			log_warn("connection %" PRIu64 ": out of memory", c->id);
			conn_close(w, c, false);
			return;
		}
		if (out_pending(&c->out)) {
			if (!c->writable)
				return;
			int r = out_flush(c);
			if (r < 0) {
				conn_close(w, c, false);
				return;
			}
			if (r > 0)
				return;
		}
		out_reset(c);
		if (c->prod.active) {
			prod_fill(c);
			continue;
		}
		if (c->after != AFTER_NONE) {
			conn_end(w, c);
			return;
		}
		if (c->mode != MODE_HTTP)
			continue;
		if (conn_can_parse(c) && c->rpos < c->rlen)
			continue;
		if (c->peer_eof) {
			if (!c->waiting)
				conn_close(w, c, false);
			return;
		}
		if (!c->readable)
			return;
		if (c->rpos == c->rlen) {
			c->rpos = c->rlen = 0;
		} else if (c->rlen == RBUF_SIZE) {
			if (c->rpos == 0)
				return; /* full of input we may not parse yet */
			memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
			c->rlen -= c->rpos;
			c->rpos = 0;
		}
		size_t room = RBUF_SIZE - c->rlen;
		ssize_t n = read(c->fd, c->rbuf + c->rlen, room);
		if (n > 0) {
			c->rlen += (size_t)n;
			c->last_io_ns = w->now_ns;
			if ((size_t)n < room && !c->rdhup)
				c->readable = false;
			continue;
		}
		if (n == 0) {
			c->peer_eof = true;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			c->readable = false;
			return;
		}
		conn_close(w, c, false);
		return;
	}
}

static bool conn_is_idle(const struct conn *c)
{
	return c->mode == MODE_HTTP && !c->waiting && !c->req.started && !c->closing &&
	       !out_pending(&c->out) && !c->prod.active && c->rpos == c->rlen;
}

static void conn_timer(struct worker *w, struct conn *c)
{
	if (c->mode == MODE_LINGER) {
		conn_close(w, c, false);
		return;
	}
	if (c->waiting) {
		c->waiting = false;
		respond(w, c);
		request_reset(c);
		if (conn_idle_armed())
			timer_set(w, c, w->now_ns + opt.idle_ns);
		conn_run(w, c);
		return;
	}
	if (!conn_idle_armed())
		return;
	if (conn_is_idle(c) && w->now_ns - c->last_io_ns >= opt.idle_ns) {
		conn_close(w, c, false);
		return;
	}
	int64_t base = conn_is_idle(c) ? c->last_io_ns : w->now_ns;
	timer_set(w, c, base + opt.idle_ns);
}

static void timers_run(struct worker *w)
{
	while (w->nheap && w->heap[0]->when_ns <= w->now_ns) {
		struct conn *c = w->heap[0];
		timer_del(w, c);
		conn_timer(w, c);
	}
}

/* ---- connection allocation ----------------------------------------------- */

/* Clears the per-connection state but keeps the buffers for reuse. */
static void conn_clear(struct conn *c)
{
	char *rbuf = c->rbuf;
	struct buf head = c->head, body = c->body, raw = c->raw, ob = c->out.b;
	struct hdr *hdrs = c->hdrs;
	uint32_t hdr_cap = c->hdr_cap;
	struct seg *segs = c->out.segs;
	unsigned seg_cap = c->out.cap;
	memset(c, 0, sizeof *c);
	c->rbuf = rbuf;
	c->head = head;
	c->body = body;
	c->raw = raw;
	c->out.b = ob;
	c->hdrs = hdrs;
	c->hdr_cap = hdr_cap;
	c->out.segs = segs;
	c->out.cap = seg_cap;
	c->head.len = c->body.len = c->raw.len = c->out.b.len = 0;
	buf_trim(&c->head);
	buf_trim(&c->body);
	buf_trim(&c->raw);
	buf_trim(&c->out.b);
	c->heap_idx = HEAP_NONE;
	c->fd = -1;
}

static void conn_destroy(struct conn *c)
{
	free(c->rbuf);
	buf_free(&c->head);
	buf_free(&c->body);
	buf_free(&c->raw);
	buf_free(&c->out.b);
	free(c->hdrs);
	free(c->out.segs);
	free(c);
}

static struct conn *conn_new(struct worker *w, int fd)
{
	struct conn *c = w->free_list;
	if (c) {
		w->free_list = c->next;
		w->nfree--;
	} else {
		c = calloc(1, sizeof *c);
		if (!c)
			return NULL;
		c->rbuf = malloc(RBUF_SIZE);
		if (!c->rbuf) {
			free(c);
			return NULL;
		}
	}
	conn_clear(c);
	c->fd = fd;
	c->w = w;
	c->id = atomic_fetch_add_explicit(&conn_ids, 1, memory_order_relaxed) + 1;
	c->writable = true;
	c->last_io_ns = w->now_ns;
	llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
	c->parser.data = c;
	c->next = w->live;
	if (w->live)
		w->live->prev = c;
	w->live = c;
	return c;
}

static void conn_close(struct worker *w, struct conn *c, bool reset)
{
	if (record_fd >= 0 && c->mode == MODE_HTTP && c->req.started && !c->req.complete) {
		c->seq++;
		record_write(w, c, NULL, true);
	}
	timer_del(w, c);
	if (reset) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	}
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->live = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (w->nfree < FREE_CONNS_MAX) {
		conn_clear(c);
		c->next = w->free_list;
		w->free_list = c;
		w->nfree++;
	} else {
		conn_destroy(c);
	}
}

static void conn_event(struct worker *w, struct conn *c, uint32_t ev)
{
	if (ev & EPOLLERR) {
		conn_close(w, c, false);
		return;
	}
	if (ev & (EPOLLRDHUP | EPOLLHUP))
		c->rdhup = true;
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))
		c->readable = true;
	if (ev & (EPOLLOUT | EPOLLHUP))
		c->writable = true;
	conn_run(w, c);
}

/* ---- worker -------------------------------------------------------------- */

static void accept_pause(struct worker *w)
{
	struct epoll_event ev = { .events = 0, .data.ptr = &w->ltag };
	epoll_ctl(w->ep, EPOLL_CTL_MOD, w->lfd, &ev);
	w->accept_paused = true;
	w->accept_resume_ns = w->now_ns + ACCEPT_PAUSE_NS;
}

static void accept_resume(struct worker *w)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &w->ltag };
	epoll_ctl(w->ep, EPOLL_CTL_MOD, w->lfd, &ev);
	w->accept_paused = false;
}

static void worker_accept(struct worker *w)
{
	for (;;) {
		int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			/* out of descriptors or memory: back off instead of spinning */
			log_warn("accept: %s (pausing accepts for 100 ms)", strerror(errno));
			accept_pause(w);
			return;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct conn *c = conn_new(w, fd);
		if (!c) {
			log_warn("accept: out of memory");
			close(fd);
			continue;
		}
		struct epoll_event ev = {
			.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
			.data.ptr = c,
		};
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			log_warn("epoll_ctl: %s", strerror(errno));
			conn_close(w, c, false);
			continue;
		}
		stat_add(&w->st->connections, 1);
		if (conn_idle_armed())
			timer_set(w, c, w->now_ns + opt.idle_ns);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[EVENTS_MAX];
	worker_clock(w);
	while (!w->stop) {
		int n = epoll_wait(w->ep, evs, EVENTS_MAX, timers_timeout_ms(w));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("epoll_wait: %s", strerror(errno));
			break;
		}
		worker_clock(w);
		for (int i = 0; i < n; i++) {
			void *tag = evs[i].data.ptr;
			if (tag == &w->ltag)
				worker_accept(w);
			else if (tag == &w->stag)
				w->stop = true;
			else
				conn_event(w, tag, evs[i].events);
		}
		timers_run(w);
		if (w->accept_paused && w->now_ns >= w->accept_resume_ns)
			accept_resume(w);
	}
	return NULL;
}

static void worker_free(struct worker *w)
{
	while (w->live)
		conn_close(w, w->live, false);
	while (w->free_list) {
		struct conn *c = w->free_list;
		w->free_list = c->next;
		conn_destroy(c);
	}
	free(w->heap);
	buf_free(&w->scratch);
	if (w->z_ready)
		deflateEnd(&w->z);
	for (unsigned i = 0; i < w->ngz; i++)
		free(w->gz[i].data);
	if (w->ep >= 0)
		close(w->ep);
	if (w->lfd >= 0)
		close(w->lfd);
	if (w->stopfd >= 0)
		close(w->stopfd);
}

static int worker_setup(struct worker *w, int idx, int lfd)
{
	w->idx = idx;
	w->lfd = lfd;
	w->st = &stats[idx];
	w->heap = NULL;
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	w->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->ep < 0 || w->stopfd < 0) {
		log_error("epoll/eventfd: %s", strerror(errno));
		return -1;
	}
	struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &w->ltag };
	struct epoll_event sev = { .events = EPOLLIN, .data.ptr = &w->stag };
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, lfd, &lev) < 0 ||
	    epoll_ctl(w->ep, EPOLL_CTL_ADD, w->stopfd, &sev) < 0) {
		log_error("epoll_ctl: %s", strerror(errno));
		return -1;
	}
	if (getrandom(&w->rng, sizeof w->rng, 0) != sizeof w->rng)
		w->rng = (uint64_t)mono_ns();
	w->rng |= 1;
	return 0;
}

/* ---- startup ------------------------------------------------------------- */

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "testbackend: %s (see --help)\n", msg);
	exit(2);
}

static long arg_long(const char *flag, const char *v, long lo, long hi)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < lo || n > hi)
		usage_error("%s: '%s' is not an integer from %ld to %ld", flag, v, lo, hi);
	return n;
}

static void args_parse(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(usage_text, stdout);
			exit(0);
		}
		if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
			opt.quiet = true;
			continue;
		}
		if (strncmp(a, "--", 2) != 0)
			usage_error("unexpected argument '%s'", a);
		const char *eq = strchr(a, '=');
		char flag[64];
		size_t fl = eq ? (size_t)(eq - a) : strlen(a);
		if (fl >= sizeof flag)
			usage_error("unknown option '%s'", a);
		memcpy(flag, a, fl);
		flag[fl] = '\0';
		static const char *const valued[] = { "--listen", "--threads", "--name", "--variant",
						      "--port-file", "--record", "--idle-timeout",
						      "--delay-ms" };
		bool known = false;
		for (size_t k = 0; k < ARRAY_SIZE(valued); k++)
			known |= strcmp(flag, valued[k]) == 0;
		if (!known)
			usage_error("unknown option '%s'", flag);
		const char *v = eq ? eq + 1 : NULL;
		if (!v) {
			if (i + 1 >= argc)
				usage_error("%s needs a value", flag);
			v = argv[++i];
		}
		if (strcmp(flag, "--listen") == 0) {
			opt.listen = v;
		} else if (strcmp(flag, "--threads") == 0) {
			opt.threads = (int)arg_long(flag, v, 1, THREADS_MAX);
		} else if (strcmp(flag, "--name") == 0) {
			size_t n = strlen(v);
			if (n == 0 || n > 100)
				usage_error("--name: 1 to 100 characters");
			for (size_t k = 0; k < n; k++)
				if ((unsigned char)v[k] < 0x20 || v[k] == 0x7f)
					usage_error("--name: control characters not allowed");
			opt.name = v;
		} else if (strcmp(flag, "--variant") == 0) {
			opt.variant = (int)arg_long(flag, v, 0, 3);
		} else if (strcmp(flag, "--port-file") == 0) {
			opt.port_file = v;
		} else if (strcmp(flag, "--record") == 0) {
			opt.record = v;
		} else if (strcmp(flag, "--delay-ms") == 0) {
			opt.delay_ms = (uint32_t)arg_long(flag, v, 0, 3600000);
		} else {
			opt.idle_ns = arg_long(flag, v, 0, 86400000) * NS_PER_MSEC;
		}
	}
}

/* HOST:PORT, :PORT or [V6]:PORT into a socket address. */
static void listen_resolve(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256];
	const char *port;
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		if (!close || close[1] != ':' || (size_t)(close - spec - 1) >= sizeof host)
			usage_error("--listen: '%s' is not [V6]:PORT", spec);
		memcpy(host, spec + 1, (size_t)(close - spec - 1));
		host[close - spec - 1] = '\0';
		port = close + 2;
	} else {
		const char *colon = strrchr(spec, ':');
		if (!colon || (size_t)(colon - spec) >= sizeof host)
			usage_error("--listen: '%s' is not HOST:PORT", spec);
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = '\0';
		port = colon + 1;
		if (!host[0])
			strcpy(host, "127.0.0.1");
	}
	arg_long("--listen port", port, 0, 65535);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc)
		usage_error("--listen: %s: %s", host, gai_strerror(rc));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
}

/* SO_REUSEPORT would let a second process of the same user join a fixed port
 * silently and take half the connections: a probe bound without it fails
 * with EADDRINUSE instead, and for port 0 it learns the port to share. */
static int port_claim(struct sockaddr_storage *ss, socklen_t *len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, (const struct sockaddr *)ss, *len) < 0 ||
	    getsockname(fd, (struct sockaddr *)ss, len) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	close(fd);
	return 0;
}

static int listener_open(const struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
	    bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, 4096) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static void addr_format(const struct sockaddr_storage *ss, char *out, size_t n)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
		snprintf(out, n, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
		snprintf(out, n, "%s:%u", ip, ntohs(s4->sin_port));
	}
}

static unsigned addr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/* Written to a temporary name and renamed, so a reader never sees half. */
static int port_file_write(const char *path, unsigned port)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
		return -1;
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -1;
	int ok = fprintf(f, "%u\n", port) > 0;
	ok &= fclose(f) == 0;
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static void pattern_build(void)
{
	pattern = malloc(PAT_ALLOC);
	if (!pattern) {
		log_error("out of memory for the body pattern");
		exit(1);
	}
	for (size_t i = 0; i < PAT_ALLOC; i += PAT_LEN)
		memcpy(pattern + i, pattern_unit, PAT_LEN);
}

int main(int argc, char **argv)
{
	args_parse(argc, argv);
	if (opt.quiet)
		log_level = LOG_ERROR;

	struct sockaddr_storage ss;
	socklen_t sslen;
	listen_resolve(opt.listen, &ss, &sslen);

	if (opt.record) {
		record_fd = open(opt.record, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (record_fd < 0)
			usage_error("--record: %s: %s", opt.record, strerror(errno));
	}

	int nthreads = opt.threads;
	int *lfds = calloc((size_t)nthreads, sizeof *lfds);
	if (!lfds) {
		log_error("out of memory");
		return 1;
	}
	char addr[128];
	addr_format(&ss, addr, sizeof addr);
	if (port_claim(&ss, &sslen) < 0)
		usage_error("--listen: %s: %s", addr, strerror(errno));
	for (int i = 0; i < nthreads; i++) {
		lfds[i] = listener_open(&ss, sslen);
		if (lfds[i] < 0) {
			addr_format(&ss, addr, sizeof addr);
			usage_error("--listen: %s: %s", addr, strerror(errno));
		}
	}

	/* listening already: connections made from now on wait in the backlog */
	addr_format(&ss, addr, sizeof addr);
	if (opt.port_file && port_file_write(opt.port_file, addr_port(&ss)) < 0)
		usage_error("--port-file: %s: %s", opt.port_file, strerror(errno));
	fprintf(stderr, "listening on %s\n", addr);

	int n = snprintf(backend_hdr, sizeof backend_hdr, "X-Backend: %s\r\n", opt.name);
	backend_hdr_len = (size_t)n;
	pattern_build();
	parser_settings_init();
	nstats = nthreads;
	stats = aligned_alloc(CACHELINE, sizeof *stats * (size_t)nthreads);
	struct worker *workers = calloc((size_t)nthreads, sizeof *workers);
	if (!stats || !workers) {
		log_error("out of memory");
		return 1;
	}
	memset(stats, 0, sizeof *stats * (size_t)nthreads);

	/* workers inherit this mask: only main takes SIGINT/SIGTERM, by sigwait */
	signal(SIGPIPE, SIG_IGN);
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	for (int i = 0; i < nthreads; i++) {
		workers[i].ep = workers[i].stopfd = -1;
		workers[i].lfd = lfds[i];
	}
	int started = 0, rc = 0;
	for (int i = 0; i < nthreads; i++) {
		if (worker_setup(&workers[i], i, lfds[i]) < 0 ||
		    pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]) != 0) {
			log_error("cannot start worker %d", i);
			rc = 1;
			break;
		}
		started++;
	}

	if (!rc) {
		int sig;
		sigwait(&sigs, &sig);
		log_info("signal %d: exiting", sig);
	}

	for (int i = 0; i < started; i++) {
		uint64_t one = 1;
		if (write(workers[i].stopfd, &one, sizeof one) < 0)
			log_warn("worker %d: stop: %s", i, strerror(errno));
	}
	for (int i = 0; i < started; i++)
		pthread_join(workers[i].tid, NULL);
	for (int i = 0; i < nthreads; i++)
		worker_free(&workers[i]);
	free(workers);
	free(lfds);
	free(stats);
	free(pattern);
	if (record_fd >= 0)
		close(record_fd);
	return rc;
}
