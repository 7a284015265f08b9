/*
 * fuzz_request: client request framing (src/http.c) and the head kage
 * writes to a backend for it (src/head.c), as src/client.c drives them.
 *
 * Input: byte 0 picks the piece sizes (see fuzz_http_common.h), byte 1 the
 * head options (bits 0-6: header rules, client address, session header;
 * bit 7: 64 KiB of empty lines first), the rest is what a client sends on
 * one connection.
 *
 * Checks, for every request head the parser accepts:
 * - the head written for the backend fits the size computed for it;
 * - it parses again, with a fresh strict parser, as exactly one request
 *   head: same method, same target, HTTP/1.1, one Host, and the same body
 *   framing (the same Content-Length, or chunked);
 * - no hop-by-hop header of the client's survives (Connection and what it
 *   names, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
 *   Upgrade), except the framing and upgrade headers kage writes itself;
 * - a Content-Length body delivers exactly that many bytes;
 * - nothing of the head storage is left allocated once the message is done.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_http_common.h"
#include "head.h"

#define NRULESETS 3

static struct bytepool pool;
static struct kage_config cfgs[NRULESETS];
static struct head_rules rulesets[NRULESETS];

static const char *const cfg_argv[NRULESETS][12] = {
	{ "kage", "--master", "production=127.0.0.1:8080", NULL },
	{ "kage", "--master", "production=127.0.0.1:8080", "--shadow", "sandbox=127.0.0.1:8081",
	  "--set-header", "*=X-Env: fuzz", "--remove-header", "*=Cookie",
	  "--set-header", "production=X-Trace: on", NULL },
	{ "kage", "--master", "production=127.0.0.1:8080",
	  "--set-header", "*=X-Forwarded-For: 10.9.9.9", "--remove-header", "production=X-Secret",
	  "--set-header", "production=Accept: */*", "--set-header", "*=x-env: again", NULL },
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	bytepool_init(&pool, 8u << 20);
	FILE *null = fopen("/dev/null", "w");
	for (int i = 0; i < NRULESETS; i++) {
		int n = 0;
		while (cfg_argv[i][n])
			n++;
		char err[512];
		if (config_parse(&cfgs[i], n, (char *const *)cfg_argv[i], null, err, sizeof err) !=
		    CONFIG_OK) {
			fprintf(stderr, "fuzz_request: config %d: %s\n", i, err);
			abort();
		}
		if (head_rules_build(&rulesets[i], &cfgs[i], 0) < 0)
			abort();
	}
	fclose(null);
	return 0;
}

/* --- state of one connection ------------------------------------------------ */

struct conn {
	struct http_parser parser;
	struct http_msg req;		/* the head moved out at HEV_HEAD, as client.c does */
	bool active;
	uint64_t body_bytes;
	struct head_request_opts opts;
	const struct head_rules *rules;
};

static void on_body(void *owner, const char *at, size_t len)
{
	struct conn *c = owner;
	/* Touch every byte: a span outside the piece is an ASan report. */
	volatile char sink = 0;
	for (size_t i = 0; i < len; i++)
		sink ^= at[i];
	(void)sink;
	c->body_bytes += len;
}

static bool is_rule_name(const struct head_rules *r, const char *n, size_t len)
{
	for (unsigned i = 0; i < r->n; i++)
		if (r->rule[i].value && r->rule[i].name_len == len &&
		    ascii_casecmp(r->rule[i].name, n, len) == 0)
			return true;
	return false;
}

/* The head kage writes for the backend, checked. */
static void check_rewrite(const struct http_msg *m, const struct head_request_opts *o)
{
	size_t size = head_request_size(m, o);
	char *buf = malloc(size);	/* exactly the computed size: ASan sees any overrun */
	if (!buf)
		abort();
	size_t n = head_request_write(m, o, buf);
	FUZZ_CHECK(n <= size, "wrote %zu bytes, computed %zu", n, size);

	struct reparse r;
	reparse_run(&r, &pool, HTTP_KIND_REQUEST, 0, buf, n);
	const struct http_msg *w = &r.p.msg;
	/* kage adds headers (rules, X-Forwarded-For, the session): a head at
	 * kage's own limits (256 fields, 64 KiB) may pass them once rewritten.
	 * Another kage would refuse it (431); a backend has its own limits. */
	if (r.ev == HEV_ERROR && (r.p.error_status == 431 || r.p.error_status == 414) &&
	    (n > HTTP_HEAD_MAX - 1024 || m->nhdr > HTTP_MAX_HEADERS - 8)) {
		reparse_done(&r);
		free(buf);
		return;
	}
	FUZZ_CHECK(r.ev == HEV_HEAD || (m->upgrade && r.ev == HEV_UPGRADE),
		   "the rewritten head does not parse (event %d, status %u, %s): %.*s", r.ev,
		   r.p.error_status, r.p.error_reason ? r.p.error_reason : "", (int)n, buf);
	FUZZ_CHECK(r.used == n, "the rewritten head parses as %zu of %zu bytes: %.*s", r.used, n,
		   (int)n, buf);
	FUZZ_CHECK(w->method == m->method, "method %u became %u", m->method, w->method);
	FUZZ_CHECK(w->target_len == m->target_len &&
			   memcmp(w->store + w->target, m->store + m->target, m->target_len) == 0,
		   "target changed");
	FUZZ_CHECK(w->major == 1 && w->minor == 1, "version %u.%u", w->major, w->minor);
	FUZZ_CHECK(w->host_count == 1, "%u Host headers", w->host_count);
	if (m->host_count == 1) {
		size_t a, b;
		const char *ha = msg_header(m, HDR_HOST, &a), *hb = msg_header(w, HDR_HOST, &b);
		FUZZ_CHECK(ha && hb && a == b && memcmp(ha, hb, a) == 0, "Host changed");
	}
	FUZZ_CHECK(w->body == m->body, "body framing %d became %d", m->body, w->body);
	if (m->body == BODY_LENGTH)
		FUZZ_CHECK(w->content_length == m->content_length, "Content-Length %llu became %llu",
			   (unsigned long long)m->content_length,
			   (unsigned long long)w->content_length);

	unsigned te = 0, up = 0, conn = 0;
	for (unsigned i = 0; i < w->nhdr; i++) {
		const struct http_hdr *h = &w->hdr[i];
		const char *name = w->store + h->name;
		const char *value = w->store + h->value;
		if (h->id == HDR_TRANSFER_ENCODING) {
			FUZZ_CHECK(o->chunked && span_is(value, h->value_len, "chunked"),
				   "a Transfer-Encoding header survives: %.*s", (int)h->value_len, value);
			te++;
		} else if (h->id == HDR_UPGRADE) {
			FUZZ_CHECK(m->upgrade, "an Upgrade header survives");
			up++;
		} else if (h->id == HDR_CONNECTION) {
			FUZZ_CHECK(m->upgrade && span_is(value, h->value_len, "upgrade"),
				   "a Connection header survives: %.*s", (int)h->value_len, value);
			conn++;
		} else {
			FUZZ_CHECK(!is_hop_name(name, h->name_len), "hop-by-hop %.*s survives",
				   (int)h->name_len, name);
		}
		/* A header the client's Connection named is dropped, unless kage
		 * writes it itself (a rule, the session header, X-Forwarded-For)
		 * or it is Host / Content-Length, which Connection cannot remove. */
		if (h->id != HDR_HOST && h->id != HDR_CONTENT_LENGTH && h->id != HDR_X_FORWARDED_FOR &&
		    h->id != HDR_TRANSFER_ENCODING && h->id != HDR_UPGRADE && h->id != HDR_CONNECTION &&
		    !is_rule_name(o->rules, name, h->name_len) &&
		    !(o->session && h->name_len == o->session_name_len &&
		      ascii_casecmp(name, o->session_name, h->name_len) == 0))
			FUZZ_CHECK(!named_by_connection(m, name, h->name_len),
				   "%.*s was named by Connection and survives", (int)h->name_len, name);
	}
	FUZZ_CHECK(te == (o->chunked ? 1u : 0u), "%u Transfer-Encoding headers", te);
	FUZZ_CHECK(up <= 1 && conn <= 1, "%u Upgrade, %u Connection headers", up, conn);
	if (o->session)
		FUZZ_CHECK(count_named(w, "x-kage-session") == 1, "session header count");
	if (o->client_addr)
		FUZZ_CHECK(msg_header(w, HDR_X_FORWARDED_FOR, &(size_t){ 0 }) != NULL,
			   "no X-Forwarded-For");

	/* Exactly one message: a head without body ends right there. */
	if (r.ev == HEV_HEAD && w->body == BODY_NONE && !w->upgrade) {
		size_t used;
		FUZZ_CHECK(http_parse(&r.p, buf + n, 0, &used) == HEV_END, "no end after the head");
	}
	reparse_done(&r);
	free(buf);
}

static void on_head(struct conn *c, const uint8_t *head, size_t head_len)
{
	check_head_bytes(head, head_len);
	check_framing(&c->parser.msg, false);
	msg_move(&c->req, &c->parser.msg);
	c->active = true;
	c->body_bytes = 0;
	c->opts.chunked = c->req.body == BODY_CHUNKED;
	c->opts.rules = c->rules;
	check_rewrite(&c->req, &c->opts);
}

static void on_end(struct conn *c)
{
	FUZZ_CHECK(c->active, "an end without a head");
	if (c->req.body == BODY_LENGTH)
		FUZZ_CHECK(c->body_bytes == c->req.content_length, "body %llu of Content-Length %llu",
			   (unsigned long long)c->body_bytes,
			   (unsigned long long)c->req.content_length);
	if (c->req.body == BODY_NONE)
		FUZZ_CHECK(c->body_bytes == 0, "body bytes on a bodyless request");
	msg_release(&c->req, &pool);
	c->active = false;
}

static const char *const addrs[] = { "127.0.0.1", "2001:db8::1", "" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct splitter sp;
	splitter_init(&sp, data[0]);
	uint8_t optb = data[1];
	data += 2;
	size -= 2;

	struct conn c;
	memset(&c, 0, sizeof c);
	c.rules = &rulesets[(optb & 0x7f) % NRULESETS];
	const char *addr = addrs[(optb >> 2) % (fuzz_known("empty-value") ? 2 : 3)];
	c.opts.client_addr = addr;
	c.opts.client_addr_len = strlen(addr);
	if (optb & 0x10) {
		c.opts.session_name = "X-Kage-Session";
		c.opts.session_name_len = 14;
		c.opts.session = "0123456789abcdef";
		c.opts.session_len = 16;
	}
	http_parser_init(&c.parser, HTTP_KIND_REQUEST, &pool, on_body, &c);

	size_t off = 0, msg_start = 0;
	bool stop = false;
	if (optb & 0x80 && !fuzz_known("crlf-flood"))
		stop = feed_crlf_flood(&c.parser);	/* empty lines past the head limit */
	while (!stop && off < size) {
		size_t n = split_next(&sp, size - off);
		char *piece = piece_dup(data + off, n);
		size_t at = 0;
		while (!stop && (at < n || c.parser.end_pending)) {
			size_t used;
			enum http_event e = http_parse(&c.parser, piece + at, n - at, &used);
			FUZZ_CHECK(used <= n - at, "used %zu of %zu", used, n - at);
			at += used;
			switch (e) {
			case HEV_MORE:
				/* client.c parses again from where this stopped: without
				 * progress it would spin forever. */
				FUZZ_CHECK(used > 0 || at == n, "HEV_MORE without progress, %zu bytes left",
					   n - at);
				break;
			case HEV_HEAD:
				FUZZ_CHECK(!c.active, "a head inside a message");
				on_head(&c, data + msg_start, off + at - msg_start);
				break;
			case HEV_END:
				on_end(&c);
				msg_start = off + at;
				break;
			case HEV_UPGRADE:
				stop = true;	/* the rest is tunnel bytes */
				break;
			case HEV_ERROR:
				FUZZ_CHECK(c.parser.error_status >= 400 && c.parser.error_status <= 505,
					   "error status %u", c.parser.error_status);
				check_fold_verdict(&c.parser, data, off + at + 1 <= size ? off + at + 1 : size);
				stop = true;
				break;
			}
		}
		free(piece);
		off += n;
	}
	if (!stop)
		(void)http_finish(&c.parser);

	msg_release(&c.req, &pool);
	http_parser_reset(&c.parser);
	msg_release(&c.parser.msg, &pool);
	FUZZ_CHECK(pool.out == 0, "%zu bytes of head storage still out", pool.out);
	return 0;
}
