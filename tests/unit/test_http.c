/*
 * HTTP framing over llhttp: heads across buffers, bodies, pipelining, and
 * every verdict of SPEC section 3, for requests and responses.
 */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "head.h"

#include "http.h"
#include "pool.h"

static struct bytepool pool;

struct sink {
	char body[65536];
	size_t body_len;
};

static void collect(void *owner, const char *at, size_t len)
{
	struct sink *s = owner;
	CU_ASSERT_FATAL(s->body_len + len <= sizeof s->body);
	memcpy(s->body + s->body_len, at, len);
	s->body_len += len;
}

static size_t min_step(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* Feed `in` in pieces of `step` bytes; record the events in order as letters. */
static void run(struct http_parser *p, const char *in, size_t len, size_t step, char *events,
		size_t evcap)
{
	size_t off = 0, ne = 0;
	while (off < len || p->end_pending) {
		size_t n = min_step(step, len - off);
		size_t used;
		enum http_event ev = http_parse(p, in + off, n, &used);
		off += used;
		char c = ev == HEV_HEAD ? 'H' : ev == HEV_END ? 'E' : ev == HEV_UPGRADE ? 'U' :
			 ev == HEV_ERROR ? 'X' : 0;
		if (c && ne + 1 < evcap)
			events[ne++] = c;
		if (ev == HEV_ERROR || ev == HEV_UPGRADE)
			break;
		if (ev == HEV_HEAD && p->kind == HTTP_KIND_REQUEST) {
			/* Keep the head around, as the proxy does until it serialised it. */
		}
	}
	events[ne] = 0;
}

static void test_simple_get(void)
{
	struct sink s = { .body_len = 0 };
	struct http_parser p;
	http_parser_init(&p, HTTP_KIND_REQUEST, &pool, collect, &s);
	const char *req = "GET /a?b=1 HTTP/1.1\r\nHost: example\r\nX-Long:  v v \t\r\n\r\n";
	size_t used;
	CU_ASSERT_EQUAL(http_parse(&p, req, strlen(req), &used), HEV_HEAD);
	CU_ASSERT_EQUAL(used, strlen(req));
	CU_ASSERT_EQUAL(p.msg.method, HTTP_GET);
	CU_ASSERT_EQUAL(p.msg.nhdr, 2);
	CU_ASSERT_EQUAL(p.msg.target_len, 6);
	CU_ASSERT_NSTRING_EQUAL(msg_str(&p.msg, p.msg.target), "/a?b=1", 6);
	size_t len;
	const char *v = msg_header_named(&p.msg, "x-long", &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	CU_ASSERT_EQUAL(len, 3);
	CU_ASSERT_NSTRING_EQUAL(v, "v v", 3);
	CU_ASSERT_TRUE(p.msg.keep_alive);
	CU_ASSERT_EQUAL(p.msg.body, BODY_NONE);
	CU_ASSERT_EQUAL(http_parse(&p, req + used, 0, &used), HEV_END);
	CU_ASSERT_TRUE(http_idle(&p));
	http_parser_reset(&p);
	msg_release(&p.msg, &pool);
}

/* Any split of the input gives the same head and body. */
static void test_byte_by_byte(void)
{
	const char *req = "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
			  "X-A: 1\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nT: x\r\n\r\n";
	for (size_t step = 1; step <= 8; step++) {
		struct sink s = { .body_len = 0 };
		struct http_parser p;
		http_parser_init(&p, HTTP_KIND_REQUEST, &pool, collect, &s);
		char ev[16];
		run(&p, req, strlen(req), step, ev, sizeof ev);
		CU_ASSERT_STRING_EQUAL(ev, "HE");
		CU_ASSERT_EQUAL(s.body_len, 11);
		CU_ASSERT_NSTRING_EQUAL(s.body, "hello world", 11);
		CU_ASSERT_EQUAL(p.msg.nhdr, 3);	/* the trailer is not a header */
		CU_ASSERT_EQUAL(p.msg.body, BODY_CHUNKED);
		http_parser_reset(&p);
	}
}

static void test_pipelined(void)
{
	struct sink s = { .body_len = 0 };
	struct http_parser p;
	http_parser_init(&p, HTTP_KIND_REQUEST, &pool, collect, &s);
	const char *two = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
			  "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
	size_t off = 0, used;
	CU_ASSERT_EQUAL(http_parse(&p, two, strlen(two), &used), HEV_HEAD);
	off += used;
	CU_ASSERT_EQUAL(off, 28);
	CU_ASSERT_EQUAL(http_parse(&p, two + off, strlen(two) - off, &used), HEV_END);
	off += used;
	CU_ASSERT_EQUAL(used, 0);
	CU_ASSERT_EQUAL(http_parse(&p, two + off, strlen(two) - off, &used), HEV_HEAD);
	off += used;
	CU_ASSERT_EQUAL(p.msg.method, HTTP_POST);
	CU_ASSERT_EQUAL(p.msg.body, BODY_LENGTH);
	CU_ASSERT_EQUAL(p.msg.content_length, 3);
	CU_ASSERT_EQUAL(http_parse(&p, two + off, strlen(two) - off, &used), HEV_END);
	off += used;
	CU_ASSERT_EQUAL(off, strlen(two));
	CU_ASSERT_EQUAL(s.body_len, 3);
	http_parser_reset(&p);
}

struct verdict {
	const char *in;
	int status;	/* 0 = accepted */
};

static const struct verdict request_verdicts[] = {
	{ "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0 },
	{ "GET / HTTP/1.0\r\n\r\n", 0 },
	{ "GET /a|b{c}%zz HTTP/1.1\r\nHost: a\r\n\r\n", 0 },
	{ "GET http://x/y HTTP/1.1\r\nHost: a\r\n\r\n", 0 },
	{ "GET / HTTP/1.1\r\nHost: a\r\nX: \xff\r\n\r\n", 0 },
	{ "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n  c\r\n\r\n", 400 },	/* obs-fold */
	{ "GET / HTTP/1.1\r\nHost: a\r\n\tX: b\r\n\r\n", 400 },		/* fold after Host */
	{ "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n \r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: a\r\nX:\r\n  c\r\n\r\n", 400 },		/* fold after an empty value */
	{ "GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\tc\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nX: \r\n c\r\nHost: a\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400 },			/* space before the first field */
	{ "GET / HTTP/1.1\nHost: a\n\n", 400 },				/* bare LF */
	{ "GET / HTTP/1.1\nHost: a\r\n\r\n", 400 },		/* bare LF after the request line */
	{ "GET / HTTP/1.0\n\r\n", 400 },
	{ "GET / HTTP/1.0\r\n\n", 400 },				/* bare LF as the blank line */
	{ "GET / HTTP/1.1\r\nHost: a\r\n\n", 400 },
	{ "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400 },		/* bare LF before the request */
	{ "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0 },		/* an empty line first is fine */
	/* a body's last CR and the next message's first LF are no CRLF */
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0 },
	{ "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400 },		/* bare CR */
	{ "GET / HTTP/1.1\r\nHost: a\r\nX: \rTransfer-Encoding: chunked\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x-custom, chunked\r\n\r\n", 501 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400 },	/* not chunked last */
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked \r\n\r\n0\r\n\r\n", 0 },	/* both read chunked */
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5  \r\nhello\r\n0\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n", 400 },
	{ "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
	/* test_smuggling te_empty: llhttp does not flag an empty field */
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\nContent-Length: 5\r\n\r\nhello", 400 },
	{ "GET / HTTP/1.1\r\n\r\n", 400 },				/* missing Host */
	{ "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },	/* duplicate Host */
	{ "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01" "b\r\n\r\n", 400 },	/* control byte */
	{ "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: a\r\nX Y: b\r\n\r\n", 400 },		/* invalid name */
	{ "GET / HTTP/1.1\r\nHost: a\r\nX\t: b\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400 },
	{ "GET /\r\n\r\n", 400 },					/* no version */
	{ "GET / HTTP/x.y\r\nHost: a\r\n\r\n", 400 },
	{ "get / HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
	{ "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505 },
	{ "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505 },
	{ "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505 },
	{ "GET / HTTP/3.1\r\nHost: a\r\n\r\n", 505 },
	{ "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505 },
	{ "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 501 },
};

static int verdict_of(const char *in, size_t len, size_t step)
{
	struct sink s = { .body_len = 0 };
	struct http_parser p;
	http_parser_init(&p, HTTP_KIND_REQUEST, &pool, collect, &s);
	char ev[16];
	run(&p, in, len, step, ev, sizeof ev);
	int st = strchr(ev, 'X') ? p.error_status : 0;
	http_parser_reset(&p);
	return st;
}

static void test_request_verdicts(void)
{
	for (size_t i = 0; i < sizeof request_verdicts / sizeof request_verdicts[0]; i++) {
		const struct verdict *v = &request_verdicts[i];
		for (size_t step = 1; step <= 64; step *= 4) {
			int st = verdict_of(v->in, strlen(v->in), step);
			if (st != v->status)
				fprintf(stderr, "\ncase %zu step %zu: got %d want %d: %s\n", i, step, st,
					v->status, v->in);
			CU_ASSERT_EQUAL(st, v->status);
		}
	}
}

static void test_size_limits(void)
{
	static char big[3 * HTTP_HEAD_MAX];
	/* A request line over the limit: 414. */
	int n = snprintf(big, sizeof big, "GET /");
	memset(big + n, 'a', HTTP_HEAD_MAX);
	n += HTTP_HEAD_MAX;
	n += snprintf(big + n, sizeof big - (size_t)n, " HTTP/1.1\r\nHost: a\r\n\r\n");
	CU_ASSERT_EQUAL(verdict_of(big, (size_t)n, 16384), 414);
	/* A header block over the limit: 431. */
	n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
	memset(big + n, 'b', HTTP_HEAD_MAX);
	n += HTTP_HEAD_MAX;
	n += snprintf(big + n, sizeof big - (size_t)n, "\r\n\r\n");
	CU_ASSERT_EQUAL(verdict_of(big, (size_t)n, 16384), 431);
	CU_ASSERT_EQUAL(verdict_of(big, (size_t)n, 7), 431);
	/* Whitespace does not dodge the limit. */
	n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: a\r\nX:");
	memset(big + n, ' ', HTTP_HEAD_MAX);
	n += HTTP_HEAD_MAX;
	n += snprintf(big + n, sizeof big - (size_t)n, "b\r\n\r\n");
	CU_ASSERT_EQUAL(verdict_of(big, (size_t)n, 16384), 431);
	/* Too many headers: 431. */
	n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 0; i < HTTP_MAX_HEADERS + 1; i++)
		n += snprintf(big + n, sizeof big - (size_t)n, "X-%d: v\r\n", i);
	n += snprintf(big + n, sizeof big - (size_t)n, "\r\n");
	CU_ASSERT_EQUAL(verdict_of(big, (size_t)n, 4096), 431);
	/* Just under the limit is fine, and the head is whole. */
	n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
	int fill = HTTP_HEAD_MAX - n - 4;
	memset(big + n, 'c', (size_t)fill);
	n += fill;
	n += snprintf(big + n, sizeof big - (size_t)n, "\r\n\r\n");
	CU_ASSERT_EQUAL(n, HTTP_HEAD_MAX);
	CU_ASSERT_EQUAL(verdict_of(big, (size_t)n, 1000), 0);
}

static void test_connection_options(void)
{
	struct sink s = { .body_len = 0 };
	struct http_parser p;
	http_parser_init(&p, HTTP_KIND_REQUEST, &pool, collect, &s);
	const char *req = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret, "
			  "Content-Length, host\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nX-Other: 2\r\n"
			  "Upgrade: h2c\r\n\r\n";
	size_t used;
	CU_ASSERT_EQUAL(http_parse(&p, req, strlen(req), &used), HEV_HEAD);
	unsigned hop = 0;
	for (unsigned i = 0; i < p.msg.nhdr; i++) {
		const struct http_hdr *h = &p.msg.hdr[i];
		const char *name = msg_str(&p.msg, h->name);
		bool is_hop = h->flags & HDR_F_HOP;
		if (h->id == HDR_HOST)
			CU_ASSERT_FALSE(is_hop);
		if (h->name_len == 7 && memcmp(name, "X-Other", 7) == 0)
			CU_ASSERT_FALSE(is_hop);
		hop += is_hop;
	}
	CU_ASSERT_EQUAL(hop, 4);	/* Connection, X-Secret, Keep-Alive, Upgrade */
	http_parser_reset(&p);
}

static void test_keep_alive(void)
{
	static const struct {
		const char *in;
		bool keep;
	} cases[] = {
		{ "GET / HTTP/1.1\r\nHost: a\r\n\r\n", true },
		{ "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false },
		{ "GET / HTTP/1.0\r\n\r\n", false },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct http_parser p;
		http_parser_init(&p, HTTP_KIND_REQUEST, &pool, NULL, NULL);
		size_t used;
		CU_ASSERT_EQUAL(http_parse(&p, cases[i].in, strlen(cases[i].in), &used), HEV_HEAD);
		CU_ASSERT_EQUAL(p.msg.keep_alive, cases[i].keep);
		http_parser_reset(&p);
	}
}

/* A bodiless response (HEAD, 204, 304) needs no close to end it, so the
 * connection's reuse follows the version and Connection alone. */
static void test_response_keep_alive(void)
{
	static const struct {
		const char *in;
		uint8_t method;
		bool keep;
	} cases[] = {
		{ "HTTP/1.1 200 OK\r\n\r\n", HTTP_HEAD, true },
		{ "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", HTTP_HEAD, false },
		{ "HTTP/1.0 200 OK\r\n\r\n", HTTP_HEAD, false },
		{ "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", HTTP_HEAD, true },
		{ "HTTP/1.1 204 No Content\r\n\r\n", HTTP_GET, true },
		{ "HTTP/1.1 304 Not Modified\r\n\r\n", HTTP_GET, true },
		{ "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n", HTTP_GET, false },
		{ "HTTP/1.1 200 OK\r\n\r\n", HTTP_GET, false },	/* close-delimited */
		{ "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", HTTP_GET, true },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct http_parser p;
		http_parser_init(&p, HTTP_KIND_RESPONSE, &pool, NULL, NULL);
		http_parser_expect(&p, cases[i].method);
		size_t used;
		CU_ASSERT_EQUAL(http_parse(&p, cases[i].in, strlen(cases[i].in), &used), HEV_HEAD);
		if (p.msg.keep_alive != cases[i].keep)
			fprintf(stderr, "\nresponse keep-alive case %zu: %d\n", i, p.msg.keep_alive);
		CU_ASSERT_EQUAL(p.msg.keep_alive, cases[i].keep);
		http_parser_reset(&p);
	}
}

static void test_upgrade_request(void)
{
	struct http_parser p;
	http_parser_init(&p, HTTP_KIND_REQUEST, &pool, NULL, NULL);
	const char *req = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
			  "Connection: Upgrade\r\n\r\nrawbytes";
	size_t used;
	CU_ASSERT_EQUAL(http_parse(&p, req, strlen(req), &used), HEV_HEAD);
	CU_ASSERT_TRUE(p.msg.upgrade);
	CU_ASSERT_EQUAL(strlen(req) - used, 8);
	http_parser_reset(&p);
}

static void test_expect_continue(void)
{
	struct http_parser p;
	http_parser_init(&p, HTTP_KIND_REQUEST, &pool, NULL, NULL);
	const char *req = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\n";
	size_t used;
	CU_ASSERT_EQUAL(http_parse(&p, req, strlen(req), &used), HEV_HEAD);
	CU_ASSERT_TRUE(p.msg.expect_continue);
	http_parser_reset(&p);
}

/* --- responses --------------------------------------------------------------- */

static void response_events(const char *in, uint8_t method, size_t step, char *ev, size_t cap,
			    struct sink *s, struct http_parser *p)
{
	http_parser_init(p, HTTP_KIND_RESPONSE, &pool, collect, s);
	http_parser_expect(p, method);
	run(p, in, strlen(in), step, ev, cap);
}

static void test_response_framing(void)
{
	static const struct {
		const char *in;
		uint8_t method;
		const char *events;
		size_t body;
	} cases[] = {
		{ "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", HTTP_GET, "HE", 5 },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", HTTP_HEAD, "HE", 0 },
		{ "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", HTTP_GET, "HE", 0 },
		{ "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", HTTP_GET, "HE", 0 },
		{ "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		  HTTP_POST, "HEHE", 2 },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		  HTTP_GET, "HE", 3 },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!",
		  HTTP_GET, "HEHE", 3 },
		{ "HTTP/1.1 2x0 OK\r\n\r\n", HTTP_GET, "X", 0 },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", HTTP_GET, "X", 0 },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n", HTTP_GET, "X", 0 },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", HTTP_GET, "X", 0 },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", HTTP_GET, "X", 0 },
		{ "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", HTTP_GET, "X", 0 },
		{ "HTTP/1.1 200 OK\r\nX:\r\n b\r\nContent-Length: 0\r\n\r\n", HTTP_GET, "X", 0 },
		{ "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nxx",
		  HTTP_GET, "U", 0 },
		{ "HTTP/2.0 200 OK\r\n\r\n", HTTP_GET, "X", 0 },
		{ "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", HTTP_GET, "X", 0 },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n", HTTP_GET, "X", 0 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		for (size_t step = 1; step <= 100; step *= 10) {
			struct sink s = { .body_len = 0 };
			struct http_parser p;
			char ev[16];
			response_events(cases[i].in, cases[i].method, step, ev, sizeof ev, &s, &p);
			if (strcmp(ev, cases[i].events) != 0)
				fprintf(stderr, "\nresponse case %zu step %zu: events %s want %s\n", i,
					step, ev, cases[i].events);
			CU_ASSERT_STRING_EQUAL(ev, cases[i].events);
			CU_ASSERT_EQUAL(s.body_len, cases[i].body);
			if (strchr(ev, 'X'))
				CU_ASSERT_EQUAL(p.error_status, 502);
			http_parser_reset(&p);
		}
	}
}

static void test_close_delimited(void)
{
	struct sink s = { .body_len = 0 };
	struct http_parser p;
	http_parser_init(&p, HTTP_KIND_RESPONSE, &pool, collect, &s);
	http_parser_expect(&p, HTTP_GET);
	const char *r = "HTTP/1.0 200 OK\r\n\r\nuntil close";
	size_t used;
	CU_ASSERT_EQUAL(http_parse(&p, r, strlen(r), &used), HEV_HEAD);
	CU_ASSERT_EQUAL(p.msg.body, BODY_EOF);
	CU_ASSERT_FALSE(p.msg.keep_alive);
	size_t off = used;
	CU_ASSERT_EQUAL(http_parse(&p, r + off, strlen(r) - off, &used), HEV_MORE);
	CU_ASSERT_EQUAL(http_finish(&p), HEV_END);
	CU_ASSERT_EQUAL(s.body_len, 11);
	http_parser_reset(&p);

	/* A close in the middle of a Content-Length body is an error. */
	http_parser_init(&p, HTTP_KIND_RESPONSE, &pool, collect, &s);
	http_parser_expect(&p, HTTP_GET);
	r = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
	CU_ASSERT_EQUAL(http_parse(&p, r, strlen(r), &used), HEV_HEAD);
	off = used;
	CU_ASSERT_EQUAL(http_parse(&p, r + off, strlen(r) - off, &used), HEV_MORE);
	CU_ASSERT_EQUAL(http_finish(&p), HEV_ERROR);
	http_parser_reset(&p);

	/* Between messages a close is nothing. */
	http_parser_init(&p, HTTP_KIND_RESPONSE, &pool, collect, &s);
	CU_ASSERT_EQUAL(http_finish(&p), HEV_MORE);
	http_parser_reset(&p);
}

/* --- regressions found by the fuzzers (tests/fuzz) ---------------------------- */

#define MIN_FEED(n) ((n) < 16384 ? (n) : 16384)

/* Each piece in a heap block of exactly its size, as a receive would be:
 * ASan sees any read past it. */
static enum http_event parse_exact(struct http_parser *p, const char *s, size_t *used)
{
	size_t n = strlen(s);
	char *b = malloc(n ? n : 1);
	memcpy(b, s, n);
	enum http_event e = http_parse(p, b, n, used);
	free(b);
	return e;
}

static void test_version_error_at_end_of_input(void)
{
	struct http_parser p;
	http_parser_init(&p, HTTP_KIND_REQUEST, &pool, NULL, NULL);
	size_t used;
	CU_ASSERT_EQUAL(parse_exact(&p, "GET / HTTP/1.2", &used), HEV_ERROR);
	CU_ASSERT_EQUAL(p.error_status, 505);
	http_parser_reset(&p);
	http_parser_init(&p, HTTP_KIND_REQUEST, &pool, NULL, NULL);
	CU_ASSERT_EQUAL(parse_exact(&p, "GET / HTTP/1.", &used), HEV_MORE);
	CU_ASSERT_EQUAL(parse_exact(&p, "7", &used), HEV_ERROR);
	CU_ASSERT_EQUAL(p.error_status, 505);
	http_parser_reset(&p);
}

static void test_empty_value_is_not_a_fold(void)
{
	static const char *const cases[] = {
		"GET / HTTP/1.1\r\nHost: a\r\nX:\r\nY: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nX:\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n",
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		for (size_t step = 1; step <= 64; step *= 2)
			CU_ASSERT_EQUAL(verdict_of(cases[i], strlen(cases[i]), step), 0);
}

static void test_status_below_100(void)
{
	static const char *const cases[] = { "HTTP/1.1 000 X\r\n\r\n", "HTTP/1.1 099 X\r\n\r\n",
					     /* not a status, but refused the same way */
					     "HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n" };
	for (size_t i = 0; i < 3; i++) {
		struct sink s = { .body_len = 0 };
		struct http_parser p;
		char ev[16];
		response_events(cases[i], HTTP_GET, 100, ev, sizeof ev, &s, &p);
		CU_ASSERT_STRING_EQUAL(ev, "X");
		CU_ASSERT_EQUAL(p.error_status, 502);
		http_parser_reset(&p);
	}
}

/* A head with no reason and no header has no store at all. */
static void test_empty_head_written(void)
{
	struct http_parser p;
	http_parser_init(&p, HTTP_KIND_RESPONSE, &pool, NULL, NULL);
	http_parser_expect(&p, HTTP_GET);
	size_t used;
	CU_ASSERT_EQUAL(parse_exact(&p, "HTTP/1.1 204\r\n\r\n", &used), HEV_HEAD);
	struct head_response_opts o = { .close = true };
	char out[256];
	CU_ASSERT_FATAL(head_response_size(&p.msg, &o) <= sizeof out);
	size_t n = head_response_write(&p.msg, &o, out);
	CU_ASSERT_EQUAL(n, strlen("HTTP/1.1 204 \r\nConnection: close\r\n\r\n"));
	CU_ASSERT_NSTRING_EQUAL(out, "HTTP/1.1 204 \r\nConnection: close\r\n\r\n", n);
	n = head_interim_write(&p.msg, out);
	CU_ASSERT_NSTRING_EQUAL(out, "HTTP/1.1 204 \r\n\r\n", n);
	http_parser_reset(&p);
}

static void test_close_delimited_empty_body(void)
{
	struct http_parser p;
	http_parser_init(&p, HTTP_KIND_RESPONSE, &pool, NULL, NULL);
	http_parser_expect(&p, HTTP_GET);
	size_t used;
	CU_ASSERT_EQUAL(parse_exact(&p, "HTTP/1.0 200 OK\r\nX: 1\r\n\r\n", &used), HEV_HEAD);
	CU_ASSERT_EQUAL(p.msg.body, BODY_EOF);
	CU_ASSERT_EQUAL(http_finish(&p), HEV_END);
	http_parser_reset(&p);
}

/* Regression (fuzz_request): empty lines before a message, past the head
 * limit, left nothing to feed and no verdict; the shard spun on them. */
static void test_empty_line_flood(void)
{
	static char flood[HTTP_HEAD_MAX + 4096];
	for (size_t i = 0; i < sizeof flood; i++)
		flood[i] = i % 2 ? '\n' : '\r';
	for (int kind = 0; kind < 2; kind++) {
		struct http_parser p;
		http_parser_init(&p, kind ? HTTP_KIND_RESPONSE : HTTP_KIND_REQUEST, &pool, NULL, NULL);
		size_t off = 0, used;
		enum http_event e = HEV_MORE;
		int calls = 0;
		while (off < sizeof flood && e == HEV_MORE && calls++ < 100000) {
			e = http_parse(&p, flood + off, MIN_FEED(sizeof flood - off), &used);
			CU_ASSERT(used > 0 || e != HEV_MORE);
			off += used;
		}
		CU_ASSERT_EQUAL(e, HEV_ERROR);
		CU_ASSERT_EQUAL(p.error_status, kind ? 502 : 400);
		http_parser_reset(&p);
	}
}

static void test_methods(void)
{
	CU_ASSERT_EQUAL(http_method_lookup("GET"), HTTP_GET);
	CU_ASSERT_EQUAL(http_method_lookup("PURGE"), HTTP_PURGE);
	CU_ASSERT_EQUAL(http_method_lookup("NOPE"), -1);
	CU_ASSERT_STRING_EQUAL(http_method_name(HTTP_DELETE), "DELETE");
	CU_ASSERT_STRING_EQUAL(http_method_name(250), "UNKNOWN");
	CU_ASSERT_TRUE(http_method_idempotent(HTTP_PUT));
	CU_ASSERT_FALSE(http_method_idempotent(HTTP_POST));
}

int main(void)
{
	bytepool_init(&pool, 64 << 20);
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	CU_pSuite s = CU_add_suite("http", NULL, NULL);
	if (!s || !CU_add_test(s, "simple GET", test_simple_get) ||
	    !CU_add_test(s, "any split", test_byte_by_byte) ||
	    !CU_add_test(s, "pipelined", test_pipelined) ||
	    !CU_add_test(s, "request verdicts", test_request_verdicts) ||
	    !CU_add_test(s, "size limits", test_size_limits) ||
	    !CU_add_test(s, "connection options", test_connection_options) ||
	    !CU_add_test(s, "keep-alive", test_keep_alive) ||
	    !CU_add_test(s, "response keep-alive", test_response_keep_alive) ||
	    !CU_add_test(s, "upgrade request", test_upgrade_request) ||
	    !CU_add_test(s, "expect continue", test_expect_continue) ||
	    !CU_add_test(s, "response framing", test_response_framing) ||
	    !CU_add_test(s, "close delimited", test_close_delimited) ||
	    !CU_add_test(s, "methods", test_methods) ||
	    !CU_add_test(s, "fuzz: version error at end of input", test_version_error_at_end_of_input) ||
	    !CU_add_test(s, "fuzz: empty value is not a fold", test_empty_value_is_not_a_fold) ||
	    !CU_add_test(s, "fuzz: status below 100", test_status_below_100) ||
	    !CU_add_test(s, "fuzz: empty head written", test_empty_head_written) ||
	    !CU_add_test(s, "fuzz: close-delimited empty body", test_close_delimited_empty_body) ||
	    !CU_add_test(s, "fuzz: empty-line flood", test_empty_line_flood)) {
		CU_cleanup_registry();
		return 1;
	}
	CU_basic_set_mode(CU_BRM_NORMAL);
	CU_basic_run_tests();
	unsigned failed = CU_get_number_of_failures();
	CU_cleanup_registry();
	bytepool_destroy(&pool);
	return failed != 0;
}
