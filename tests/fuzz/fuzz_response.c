/*
 * fuzz_response: master response framing (src/http.c, HTTP_KIND_RESPONSE)
 * and the head kage writes to the client for it (src/head.c), as
 * src/upstream.c and src/client.c drive them.
 *
 * Input: byte 0 picks the piece sizes (see fuzz_http_common.h); byte 1:
 * bits 0-2 the request's method (0 GET, 1 HEAD, 2 POST, 3 OPTIONS, 4 PUT,
 * others GET), bit 3 an HTTP/1.0 client, bit 4 a client that asked to
 * close, bit 7 64 KiB of empty lines before the input. The rest is what master sends on one connection; the connection
 * ends with the input (http_finish).
 *
 * Checks:
 * - every event is one a response parser may give in that order: interim
 *   heads (1xx) and their ends, then one final head, its body, its end;
 *   never a second head inside a message;
 * - a body of Content-Length n delivers n bytes; HEAD, 1xx, 204 and 304
 *   deliver none; a close-delimited body is never kept alive;
 * - the head written for the client fits its computed size and parses
 *   again, strictly, as one response head with the same status and reason,
 *   the framing kage chose (Content-Length as master sent it, chunked for a
 *   1.1 client when master's was chunked or close-delimited, until-close for
 *   a 1.0 client), and no hop-by-hop header of master's;
 * - every refusal is a 502 (or 503 when the head store is refused);
 * - nothing of the head storage is left allocated at the end.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_http_common.h"
#include "head.h"

static struct bytepool pool;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	bytepool_init(&pool, 8u << 20);
	return 0;
}

struct conn {
	struct http_parser parser;
	uint8_t method;
	bool http10;
	bool want_close;
	bool active;		/* a final head was seen, its end not yet */
	bool interim;		/* an interim head was seen, its end not yet */
	uint64_t body_bytes;
	struct http_msg head;	/* a copy of the final head, for the end's checks */
};

static void on_body(void *owner, const char *at, size_t len)
{
	struct conn *c = owner;
	volatile char sink = 0;
	for (size_t i = 0; i < len; i++)
		sink ^= at[i];
	(void)sink;
	FUZZ_CHECK(c->active, "body bytes outside a final response (%zu)", len);
	c->body_bytes += len;
}

static bool bodyless(const struct conn *c, unsigned status)
{
	return c->method == HTTP_HEAD || status == 204 || status == 304 || status < 200;
}

/* No hop-by-hop header of master's is in the written head `w`; only kage's
 * own framing (one Transfer-Encoding: chunked, one Connection). */
static void check_no_hop(const struct http_msg *m, const struct http_msg *w, bool chunked,
			 bool upgrade)
{
	unsigned te = 0, conn = 0, up = 0;
	for (unsigned i = 0; i < w->nhdr; i++) {
		const struct http_hdr *h = &w->hdr[i];
		const char *name = w->store + h->name, *value = w->store + h->value;
		switch (h->id) {
		case HDR_TRANSFER_ENCODING:
			FUZZ_CHECK(chunked && span_is(value, h->value_len, "chunked"),
				   "Transfer-Encoding %.*s survives", (int)h->value_len, value);
			te++;
			break;
		case HDR_CONNECTION:
			FUZZ_CHECK(span_is(value, h->value_len, "close") ||
					   span_is(value, h->value_len, "keep-alive") ||
					   (upgrade && span_is(value, h->value_len, "upgrade")),
				   "Connection %.*s survives", (int)h->value_len, value);
			conn++;
			break;
		case HDR_UPGRADE:
			FUZZ_CHECK(upgrade, "Upgrade survives");
			up++;
			break;
		default:
			FUZZ_CHECK(!is_hop_name(name, h->name_len), "hop-by-hop %.*s survives",
				   (int)h->name_len, name);
			if (h->id != HDR_CONTENT_LENGTH)
				FUZZ_CHECK(!named_by_connection(m, name, h->name_len),
					   "%.*s was named by Connection and survives",
					   (int)h->name_len, name);
		}
	}
	FUZZ_CHECK(te == (chunked ? 1u : 0u) && conn <= 1 && up <= 1,
		   "%u Transfer-Encoding, %u Connection, %u Upgrade", te, conn, up);
}

static void check_status_line(const struct http_msg *m, const struct http_msg *w)
{
	FUZZ_CHECK(w->status == m->status, "status %u became %u", m->status, w->status);
	FUZZ_CHECK(w->reason_len == m->reason_len &&
			   (!m->reason_len ||
			    memcmp(w->store + w->reason, m->store + m->reason, m->reason_len) == 0),
		   "reason changed");
	FUZZ_CHECK(w->major == 1 && w->minor == 1, "version %u.%u", w->major, w->minor);
}

/* What client.c's master_head() writes for an interim response. */
static void check_interim(const struct conn *c, const struct http_msg *m)
{
	if (!m->store && fuzz_known("null-store"))
		return;
	size_t size = head_response_size(m, &(struct head_response_opts){ 0 });
	char *buf = malloc(size);
	if (!buf)
		abort();
	size_t n = head_interim_write(m, buf);
	FUZZ_CHECK(n <= size, "interim: wrote %zu, computed %zu", n, size);
	struct reparse r;
	reparse_run(&r, &pool, HTTP_KIND_RESPONSE, c->method, buf, n);
	FUZZ_CHECK(r.ev == HEV_HEAD && r.used == n && r.p.msg.interim,
		   "the interim head does not parse as one (event %d, %zu of %zu, %s): %.*s", r.ev,
		   r.used, n, r.p.error_reason ? r.p.error_reason : "", (int)n, buf);
	check_status_line(m, &r.p.msg);
	check_no_hop(m, &r.p.msg, false, false);
	reparse_done(&r);
	free(buf);
}

/* What client.c's master_head() writes for a final response or a 101. */
static void check_final(const struct conn *c, const struct http_msg *m)
{
	if (!m->store && fuzz_known("null-store"))
		return;
	bool framed_by_close = m->body == BODY_CHUNKED || m->body == BODY_EOF;
	struct head_response_opts o = {
		.chunked = !c->http10 && framed_by_close,
		.close = (c->http10 && framed_by_close) || c->want_close,
	};
	if (m->upgrade)
		o.close = false;
	o.keep_alive_10 = c->http10 && !o.close;

	size_t size = head_response_size(m, &o);
	char *buf = malloc(size);
	if (!buf)
		abort();
	size_t n = head_response_write(m, &o, buf);
	FUZZ_CHECK(n <= size, "wrote %zu, computed %zu", n, size);

	struct reparse r;
	reparse_run(&r, &pool, HTTP_KIND_RESPONSE, c->method, buf, n);
	const struct http_msg *w = &r.p.msg;
	/* Framing headers added to a head at kage's own limits (256 fields,
	 * 64 KiB) may pass them: not a head a client cannot read. */
	if (r.ev == HEV_ERROR && (n > HTTP_HEAD_MAX - 64 || m->nhdr > HTTP_MAX_HEADERS - 3)) {
		reparse_done(&r);
		free(buf);
		return;
	}
	FUZZ_CHECK(r.ev == HEV_HEAD || (m->upgrade && r.ev == HEV_UPGRADE),
		   "the written head does not parse (event %d, status %u, %s): %.*s", r.ev,
		   r.p.error_status, r.p.error_reason ? r.p.error_reason : "", (int)n, buf);
	FUZZ_CHECK(r.used == n, "the written head parses as %zu of %zu bytes: %.*s", r.used, n,
		   (int)n, buf);
	check_status_line(m, w);
	FUZZ_CHECK(w->upgrade == m->upgrade, "upgrade %d became %d", m->upgrade, w->upgrade);
	if (!m->upgrade) {
		enum http_body want = m->body;
		if (o.chunked)
			want = BODY_CHUNKED;
		else if (framed_by_close)
			want = BODY_EOF;	/* to an HTTP/1.0 client: until kage closes */
		FUZZ_CHECK(w->body == want, "body framing %d written as %d (chunked %d)", m->body,
			   w->body, o.chunked);
		if (want == BODY_LENGTH)
			FUZZ_CHECK(w->content_length == m->content_length,
				   "Content-Length %llu became %llu",
				   (unsigned long long)m->content_length,
				   (unsigned long long)w->content_length);
		/* What the client will do after it: close exactly when kage will.
		 * (Not for HEAD: http.c decides keep-alive before llhttp knows the
		 * response has no body, so a HEAD response without Content-Length
		 * or chunked reads as close-delimited to it; a client knows better.) */
		FUZZ_CHECK(w->keep_alive == !o.close || c->http10 || c->method == HTTP_HEAD,
			   "the client would %s, kage will %s", w->keep_alive ? "keep alive" : "close",
			   o.close ? "close" : "keep alive");
	}
	check_no_hop(m, w, o.chunked, m->upgrade);
	reparse_done(&r);
	free(buf);
}

/* False when the input should end here (a known bug, see fuzz_known()). */
static bool on_head(struct conn *c, const uint8_t *head, size_t head_len)
{
	struct http_msg *m = &c->parser.msg;
	check_head_bytes(head, head_len);
	FUZZ_CHECK(!c->active && !c->interim, "a head inside a message");
	if (m->status < 100 && fuzz_known("status-range"))
		return false;
	FUZZ_CHECK(m->status >= 100 && m->status <= 999, "status %u", m->status);
	if (m->interim) {
		FUZZ_CHECK(m->status < 200 && m->status != 101 && m->body == BODY_NONE,
			   "interim %u with body %d", m->status, m->body);
		check_interim(c, m);
		c->interim = true;
		return true;
	}
	if (bodyless(c, m->status))
		FUZZ_CHECK(m->body == BODY_NONE, "status %u to method %u has body framing %d",
			   m->status, c->method, m->body);
	if (m->body == BODY_EOF)
		FUZZ_CHECK(!m->keep_alive, "a close-delimited body kept alive");
	/* No body needs no close: an HTTP/1.1 HEAD answer without a length
	 * once dropped master's connection. */
	if (bodyless(c, m->status) && m->minor == 1 &&
	    !(c->parser.ll.flags & F_CONNECTION_CLOSE))
		FUZZ_CHECK(m->keep_alive, "bodiless %u to method %u not kept alive", m->status,
			   c->method);
	if (!bodyless(c, m->status))
		check_framing(m, true);
	check_final(c, m);
	c->active = true;
	c->body_bytes = 0;
	if (!msg_copy(&c->head, m, &pool))
		abort();
	return true;
}

static void on_end(struct conn *c)
{
	if (c->interim) {
		c->interim = false;
		msg_release(&c->parser.msg, &pool);	/* as upstream.c does */
		return;
	}
	FUZZ_CHECK(c->active, "an end without a head");
	const struct http_msg *m = &c->head;
	if (m->body == BODY_LENGTH)
		FUZZ_CHECK(c->body_bytes == m->content_length, "body %llu of Content-Length %llu",
			   (unsigned long long)c->body_bytes, (unsigned long long)m->content_length);
	if (m->body == BODY_NONE)
		FUZZ_CHECK(c->body_bytes == 0, "%llu body bytes on a bodyless response",
			   (unsigned long long)c->body_bytes);
	msg_release(&c->head, &pool);
	msg_release(&c->parser.msg, &pool);	/* upstream_release() */
	c->active = false;
	/* The next request on this kept-alive connection: the same method. */
	http_parser_expect(&c->parser, c->method);
}

static const uint8_t methods[8] = {
	HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_OPTIONS, HTTP_PUT, HTTP_GET, HTTP_GET, HTTP_GET,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct splitter sp;
	splitter_init(&sp, data[0]);
	struct conn c;
	memset(&c, 0, sizeof c);
	c.method = methods[data[1] & 7];
	c.http10 = data[1] & 8;
	c.want_close = data[1] & 16;
	bool flood = data[1] & 0x80;
	data += 2;
	size -= 2;
	http_parser_init(&c.parser, HTTP_KIND_RESPONSE, &pool, on_body, &c);
	http_parser_expect(&c.parser, c.method);

	size_t off = 0, msg_start = 0;
	bool stop = false;
	if (flood && !fuzz_known("crlf-flood"))
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
				FUZZ_CHECK(used > 0 || at == n, "HEV_MORE without progress");
				break;
			case HEV_HEAD:
				stop = !on_head(&c, data + msg_start, off + at - msg_start);
				break;
			case HEV_END:
				on_end(&c);
				msg_start = off + at;
				break;
			case HEV_UPGRADE:
				stop = true;	/* tunnel bytes from here */
				FUZZ_CHECK(c.parser.msg.status == 101, "upgrade on status %u",
					   c.parser.msg.status);
				if (!c.active)
					check_final(&c, &c.parser.msg);
				break;
			case HEV_ERROR:
				FUZZ_CHECK(c.parser.error_status == 502 || c.parser.error_status == 503,
					   "response error status %u", c.parser.error_status);
				check_fold_verdict(&c.parser, data, off + at + 1 <= size ? off + at + 1 : size);
				stop = true;
				break;
			}
		}
		free(piece);
		off += n;
	}
	if (!stop && !c.parser.error_status) {
		bool eof_body = c.active && c.head.body == BODY_EOF;
		enum http_event e = http_finish(&c.parser);
		if (eof_body && !fuzz_known("eof-empty"))
			FUZZ_CHECK(e == HEV_END, "a close-delimited body does not end at the close (%d)", e);
		if (e == HEV_END)
			on_end(&c);
		else if (e == HEV_ERROR)
			FUZZ_CHECK(c.parser.error_status == 502, "finish status %u", c.parser.error_status);
	}

	msg_release(&c.head, &pool);
	http_parser_reset(&c.parser);
	msg_release(&c.parser.msg, &pool);
	FUZZ_CHECK(pool.out == 0, "%zu bytes of head storage still out", pool.out);
	return 0;
}
