/*
 * http: see http.h. llhttp does the tokenising in strict mode; this file
 * adds what llhttp 8.1.0 leaves to the caller: head storage across buffers,
 * line-ending and obs-fold checks, size limits, the version / Host / Transfer-Encoding /
 * CONNECT verdicts, and which responses carry no body.
 */
#include "http.h"

#include <string.h>

#include "pool.h"
#include "util.h"

#define STORE_MIN (4 * 1024)
/* Heads are capped at HTTP_HEAD_MAX bytes; the store also holds the
 * header index, so it may need up to twice that. */
#define STORE_MAX (2 * HTTP_HEAD_MAX + HTTP_MAX_HEADERS * sizeof(struct http_hdr))

/* --- message storage ----------------------------------------------------- */

static size_t index_bytes(const struct http_msg *m)
{
	return (size_t)m->nhdr * sizeof(struct http_hdr);
}

/* Make room for `more` string bytes plus one more header entry. */
static bool store_reserve(struct http_parser *p, size_t more)
{
	struct http_msg *m = &p->msg;
	size_t need = m->used + more + index_bytes(m) + sizeof(struct http_hdr);
	if (m->store && need <= m->cap)
		return true;
	if (need > STORE_MAX)
		return false;
	size_t cap;
	char *s = bytepool_get(p->pool, MAX(need * 2, (size_t)STORE_MIN), &cap);
	if (!s) {
		p->oom = true;
		return false;
	}
	if (m->store) {
		memcpy(s, m->store, m->used);
		memcpy(s + cap - index_bytes(m), m->hdr, index_bytes(m));
		bytepool_put(p->pool, m->store, m->cap);
	}
	m->store = s;
	m->cap = cap;
	m->hdr = (struct http_hdr *)(void *)(s + cap) - m->nhdr;
	return true;
}

static bool store_append(struct http_parser *p, const char *at, size_t len)
{
	if (!store_reserve(p, len))
		return false;
	memcpy(p->msg.store + p->msg.used, at, len);
	p->msg.used += (uint32_t)len;
	return true;
}

void msg_release(struct http_msg *m, struct bytepool *pool)
{
	if (m->store)
		bytepool_put(pool, m->store, m->cap);
	memset(m, 0, sizeof *m);
}

bool msg_copy(struct http_msg *to, const struct http_msg *from, struct bytepool *pool)
{
	size_t idx = index_bytes(from);
	size_t cap;
	char *s = bytepool_get(pool, from->used + idx + sizeof(struct http_hdr), &cap);
	if (!s)
		return false;
	*to = *from;
	to->store = s;
	to->cap = cap;
	if (from->used)
		memcpy(s, from->store, from->used);
	to->hdr = (struct http_hdr *)(void *)(s + cap) - from->nhdr;
	if (idx)
		memcpy(to->hdr, from->hdr, idx);
	return true;
}

void msg_move(struct http_msg *to, struct http_msg *from)
{
	*to = *from;
	memset(from, 0, sizeof *from);
}

const char *msg_header(const struct http_msg *m, enum hdr_id id, size_t *len)
{
	for (unsigned i = 0; i < m->nhdr; i++) {
		if (m->hdr[i].id == id) {
			*len = m->hdr[i].value_len;
			return m->store + m->hdr[i].value;
		}
	}
	return NULL;
}

const char *msg_header_named(const struct http_msg *m, const char *name, size_t *len)
{
	size_t n = strlen(name);
	for (unsigned i = 0; i < m->nhdr; i++) {
		const struct http_hdr *h = &m->hdr[i];
		if (h->name_len == n && ascii_casecmp(m->store + h->name, name, n) == 0) {
			*len = h->value_len;
			return m->store + h->value;
		}
	}
	return NULL;
}

/* --- header classification ------------------------------------------------ */

#define KNOWN(s, id, hop) { s, sizeof s - 1, id, hop }
static const struct {
	const char *name;	/* lowercase */
	uint16_t len;
	uint8_t id;
	bool hop;
} known_headers[] = {
	KNOWN("host", HDR_HOST, false),
	KNOWN("content-length", HDR_CONTENT_LENGTH, false),
	KNOWN("transfer-encoding", HDR_TRANSFER_ENCODING, true),
	KNOWN("connection", HDR_CONNECTION, true),
	KNOWN("keep-alive", HDR_KEEP_ALIVE, true),
	KNOWN("proxy-connection", HDR_PROXY_CONNECTION, true),
	KNOWN("te", HDR_TE, true),
	KNOWN("trailer", HDR_TRAILER, true),
	KNOWN("upgrade", HDR_UPGRADE, true),
	KNOWN("expect", HDR_EXPECT, false),
	KNOWN("x-forwarded-for", HDR_X_FORWARDED_FOR, false),
	KNOWN("content-type", HDR_CONTENT_TYPE, false),
	KNOWN("content-encoding", HDR_CONTENT_ENCODING, false),
	KNOWN("date", HDR_DATE, false),
};
#undef KNOWN

/*
 * Once per header of every message: most names are none of ours, so
 * rule them out by length and first letter before comparing anything.
 */
static void classify(struct http_hdr *h, const char *name)
{
	h->id = HDR_OTHER;
	h->flags = 0;
	unsigned char first = (unsigned char)name[0] | 0x20;
	for (size_t i = 0; i < ARRAY_SIZE(known_headers); i++) {
		const char *k = known_headers[i].name;
		if (known_headers[i].len != h->name_len || (unsigned char)k[0] != first)
			continue;
		if (span_is(name, h->name_len, k)) {
			h->id = known_headers[i].id;
			h->flags = known_headers[i].hop ? HDR_F_HOP : 0;
			return;
		}
	}
}

/* Iterate comma-separated list elements of a header value, trimmed. */
static bool next_token(const char **s, const char *end, const char **tok, size_t *len)
{
	const char *p = *s;
	while (p < end && (*p == ',' || *p == ' ' || *p == '\t'))
		p++;
	if (p == end)
		return false;
	const char *start = p;
	while (p < end && *p != ',')
		p++;
	const char *e = p;
	while (e > start && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*tok = start;
	*len = (size_t)(e - start);
	*s = p;
	return true;
}

/*
 * Headers named by Connection are hop-by-hop too. Host and Content-Length
 * never are: a client naming them there must not make kage drop the
 * framing or the authority of what it forwards.
 */
static void mark_connection_options(struct http_msg *m)
{
	for (unsigned i = 0; i < m->nhdr; i++) {
		if (m->hdr[i].id != HDR_CONNECTION)
			continue;
		const char *s = m->store + m->hdr[i].value;
		const char *end = s + m->hdr[i].value_len;
		const char *tok;
		size_t len;
		while (next_token(&s, end, &tok, &len)) {
			for (unsigned j = 0; j < m->nhdr; j++) {
				struct http_hdr *h = &m->hdr[j];
				if (h->name_len == len && h->id != HDR_HOST &&
				    h->id != HDR_CONTENT_LENGTH &&
				    ascii_casecmp(m->store + h->name, tok, len) == 0)
					h->flags |= HDR_F_HOP;
			}
		}
	}
}

/* --- llhttp callbacks ------------------------------------------------------- */

static struct http_parser *parser_of(llhttp_t *ll)
{
	return container_of(ll, struct http_parser, ll);
}

static int fail(struct http_parser *p, uint16_t status, const char *reason)
{
	p->error_status = status;
	p->error_reason = reason;
	return HPE_USER;
}

static int on_message_begin(llhttp_t *ll)
{
	struct http_parser *p = parser_of(ll);
	struct http_msg *m = &p->msg;
	/* Keep the store (if the owner left it) but forget the old head. */
	char *store = m->store;
	size_t cap = m->cap;
	memset(m, 0, sizeof *m);
	m->store = store;
	m->cap = cap;
	m->hdr = store ? (struct http_hdr *)(void *)(store + cap) : NULL;
	p->in_head = true;
	p->in_message = true;
	p->in_trailers = false;
	p->seen_version = false;
	p->seen_field = false;
	p->field_open = false;
	return 0;
}

/* The target (requests) or the reason phrase (responses), which a receive
 * buffer boundary may split into several spans. */
static int append_line_part(struct http_parser *p, uint32_t *off, uint32_t *len, const char *at,
			    size_t n)
{
	if (*len == 0)
		*off = p->msg.used;
	if (!store_append(p, at, n))
		return fail(p, p->kind == HTTP_KIND_REQUEST ? 414 : 502, "start line too long");
	*len += (uint32_t)n;
	return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
	struct http_parser *p = parser_of(ll);
	return append_line_part(p, &p->msg.target, &p->msg.target_len, at, len);
}

static int on_status(llhttp_t *ll, const char *at, size_t len)
{
	struct http_parser *p = parser_of(ll);
	return append_line_part(p, &p->msg.reason, &p->msg.reason_len, at, len);
}

static int on_version(llhttp_t *ll, const char *at, size_t len)
{
	parser_of(ll)->seen_version = true;
	return 0;
}

static uint16_t head_too_big(const struct http_parser *p)
{
	if (p->kind == HTTP_KIND_RESPONSE)
		return 502;
	return p->seen_field ? 431 : 414;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len)
{
	struct http_parser *p = parser_of(ll);
	if (p->in_trailers)
		return 0;
	struct http_msg *m = &p->msg;
	if (!p->field_open) {
		/* The first span of a new field name (more may follow when a
		 * receive buffer boundary splits the name). */
		if (m->nhdr >= HTTP_MAX_HEADERS)
			return fail(p, p->kind == HTTP_KIND_REQUEST ? 431 : 502, "too many headers");
		p->field_start = m->used;
		p->field_open = true;
	}
	p->seen_field = true;
	if (!store_append(p, at, len))
		return fail(p, head_too_big(p), "header block too large");
	return 0;
}

static int on_header_field_complete(llhttp_t *ll)
{
	struct http_parser *p = parser_of(ll);
	if (p->in_trailers)
		return 0;
	p->field_open = false;
	p->value_start = p->msg.used;
	return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len)
{
	struct http_parser *p = parser_of(ll);
	if (p->in_trailers)
		return 0;
	if (!store_append(p, at, len))
		return fail(p, head_too_big(p), "header block too large");
	return 0;
}

static int on_header_value_complete(llhttp_t *ll)
{
	struct http_parser *p = parser_of(ll);
	if (p->in_trailers)
		return 0;
	struct http_msg *m = &p->msg;
	if (!store_reserve(p, 0))
		return fail(p, head_too_big(p), "header block too large");
	struct http_hdr *h = m->hdr - 1;
	h->name = p->field_start;
	h->name_len = (uint16_t)(p->value_start - p->field_start);
	if (h->name_len == 0)
		return fail(p, p->kind == HTTP_KIND_REQUEST ? 400 : 502, "empty header name");
	h->value = p->value_start;
	uint32_t vlen = m->used - p->value_start;
	/* llhttp skips leading whitespace but keeps trailing whitespace. */
	while (vlen && (m->store[h->value + vlen - 1] == ' ' || m->store[h->value + vlen - 1] == '\t'))
		vlen--;
	h->value_len = vlen;
	classify(h, m->store + h->name);
	m->hdr = h;
	m->nhdr++;
	if (h->id == HDR_HOST)
		m->host_count++;
	return 0;
}

/*
 * Transfer codings kage can frame: chunked, once, last. Not last means the
 * body length cannot be known (400, RFC 9112 6.3); another coding before it
 * is one kage does not implement (501).
 */
static uint16_t check_transfer_encoding(const struct http_msg *m)
{
	unsigned chunked = 0, other = 0;
	bool last_chunked = false;
	for (unsigned i = 0; i < m->nhdr; i++) {
		if (m->hdr[i].id != HDR_TRANSFER_ENCODING)
			continue;
		const char *s = m->store + m->hdr[i].value;
		const char *end = s + m->hdr[i].value_len;
		const char *tok;
		size_t len;
		while (next_token(&s, end, &tok, &len)) {
			last_chunked = span_is(tok, len, "chunked");
			if (last_chunked)
				chunked++;
			else
				other++;
		}
	}
	if (!last_chunked || chunked > 1)
		return 400;
	return other ? 501 : 0;
}

/* llhttp flags Transfer-Encoding only when the field has a value; an empty
 * one ("Transfer-Encoding:") still says the body is not Content-Length
 * framed, and a reader that ignores it frames the body differently. */
static bool has_transfer_encoding(const struct http_parser *p)
{
	size_t len;
	return (p->ll.flags & F_TRANSFER_ENCODING) ||
	       msg_header(&p->msg, HDR_TRANSFER_ENCODING, &len) != NULL;
}

static bool expects_continue(const struct http_msg *m)
{
	size_t len;
	const char *v = msg_header(m, HDR_EXPECT, &len);
	return v && span_is(v, len, "100-continue");
}

static void set_body_kind(struct http_parser *p)
{
	struct http_msg *m = &p->msg;
	if (p->ll.flags & F_CHUNKED) {
		m->body = BODY_CHUNKED;
	} else if (p->ll.flags & F_CONTENT_LENGTH) {
		m->body = p->ll.content_length ? BODY_LENGTH : BODY_NONE;
		m->content_length = p->ll.content_length;
	} else {
		m->body = BODY_NONE;
	}
}

static int request_headers_complete(struct http_parser *p)
{
	struct http_msg *m = &p->msg;
	m->method = p->ll.method;
	m->major = p->ll.http_major;
	m->minor = p->ll.http_minor;
	if (!p->seen_version)
		return fail(p, 400, "request line without a version");
	if (m->major != 1 || m->minor > 1)
		return fail(p, 505, "HTTP version not supported");
	if (m->method == HTTP_CONNECT)
		return fail(p, 501, "CONNECT is not supported");
	if (m->minor == 1 ? m->host_count != 1 : m->host_count > 1)
		return fail(p, 400, m->host_count ? "duplicate Host" : "missing Host");
	if (has_transfer_encoding(p)) {
		if (m->minor == 0)
			return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 request");
		uint16_t st = check_transfer_encoding(m);
		if (st)
			return fail(p, st, st == 501 ? "unsupported transfer coding" : "bad Transfer-Encoding");
		/* Ours reads it as chunked; llhttp must too, or the two frame
		 * the body differently ("chunked<TAB>"): refuse the ambiguity. */
		if (!(p->ll.flags & F_CHUNKED))
			return fail(p, 400, "ambiguous Transfer-Encoding");
	}
	set_body_kind(p);
	m->keep_alive = llhttp_should_keep_alive(&p->ll);
	m->upgrade = p->ll.upgrade;
	m->expect_continue = expects_continue(m);
	mark_connection_options(m);
	p->head_ready = true;
	/* No body: let llhttp end the message now, so its end is owed with
	 * the head (end_pending) whether or not more bytes follow. */
	return m->body == BODY_NONE ? 1 : HPE_PAUSED;
}

/*
 * llhttp_should_keep_alive() asks whether the message needs a close to end,
 * and for a HEAD response without Content-Length it says yes: it learns the
 * body is skipped only from our return value. No body needs no close, so
 * only the version and Connection decide.
 */
static bool bodiless_keep_alive(const llhttp_t *ll)
{
	if (ll->http_major == 1 && ll->http_minor >= 1)
		return !(ll->flags & F_CONNECTION_CLOSE);
	return (ll->flags & F_CONNECTION_KEEP_ALIVE) != 0;
}

/* Return values per llhttp: 1 = no body, 2 = no body and upgrade. */
static int response_headers_complete(struct http_parser *p)
{
	struct http_msg *m = &p->msg;
	m->status = p->ll.status_code;
	m->major = p->ll.http_major;
	m->minor = p->ll.http_minor;
	if (m->major != 1)
		return fail(p, 502, "response version is not HTTP/1.x");
	if (m->status < 100)
		return fail(p, 502, "response status below 100");
	if (has_transfer_encoding(p) &&
	    (check_transfer_encoding(m) || !(p->ll.flags & F_CHUNKED)))
		return fail(p, 502, "response transfer coding other than chunked");
	mark_connection_options(m);
	p->head_ready = true;
	if (m->status == 101) {
		m->upgrade = true;
		m->body = BODY_NONE;
		return 2;
	}
	if (m->status < 200) {
		m->interim = true;
		m->body = BODY_NONE;
		m->keep_alive = true;
		return 1;
	}
	if (p->req_method == HTTP_HEAD || m->status == 204 || m->status == 304) {
		m->body = BODY_NONE;
		m->keep_alive = bodiless_keep_alive(&p->ll);
		return 1;
	}
	set_body_kind(p);
	if (llhttp_message_needs_eof(&p->ll))
		m->body = BODY_EOF;
	m->keep_alive = m->body != BODY_EOF && llhttp_should_keep_alive(&p->ll);
	return m->body == BODY_NONE ? 1 : HPE_PAUSED;
}

/* The index grew downwards, newest first: put it in arrival order. */
static void order_headers(struct http_msg *m)
{
	for (unsigned i = 0, j = m->nhdr; i + 1 < j; i++, j--) {
		struct http_hdr t = m->hdr[i];
		m->hdr[i] = m->hdr[j - 1];
		m->hdr[j - 1] = t;
	}
}

static int on_headers_complete(llhttp_t *ll)
{
	struct http_parser *p = parser_of(ll);
	order_headers(&p->msg);
	p->in_head = false;
	p->in_trailers = true;	/* fields from now on are trailers: dropped */
	int ret = p->kind == HTTP_KIND_REQUEST ? request_headers_complete(p)
					       : response_headers_complete(p);
	p->keep_alive = p->msg.keep_alive;
	return ret;
}

static int on_body(llhttp_t *ll, const char *at, size_t len)
{
	struct http_parser *p = parser_of(ll);
	if (p->on_body && len)
		p->on_body(p->owner, at, len);
	return 0;
}

static int on_message_complete(llhttp_t *ll)
{
	struct http_parser *p = parser_of(ll);
	p->in_message = false;
	p->end_ready = true;
	if (p->kind == HTTP_KIND_REQUEST)
		p->want_close = !llhttp_should_keep_alive(ll);
	/* A 101 continues as a tunnel: llhttp returns PAUSED_UPGRADE itself. */
	if (p->msg.upgrade && p->kind == HTTP_KIND_RESPONSE)
		return 0;
	return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_status = on_status,
	.on_version = on_version,
	.on_header_field = on_header_field,
	.on_header_field_complete = on_header_field_complete,
	.on_header_value = on_header_value,
	.on_header_value_complete = on_header_value_complete,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* --- parser API --------------------------------------------------------------- */

void http_parser_init(struct http_parser *p, enum http_kind kind, struct bytepool *pool,
		      http_body_fn body_fn, void *owner)
{
	memset(p, 0, sizeof *p);
	p->kind = (uint8_t)kind;
	p->pool = pool;
	p->on_body = body_fn;
	p->owner = owner;
	llhttp_init(&p->ll, kind == HTTP_KIND_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
	/* Every leniency stays off (they are off by default; say so). */
	llhttp_set_lenient_headers(&p->ll, 0);
	llhttp_set_lenient_chunked_length(&p->ll, 0);
	llhttp_set_lenient_keep_alive(&p->ll, 0);
	llhttp_set_lenient_transfer_encoding(&p->ll, 0);
}

void http_parser_reset(struct http_parser *p)
{
	msg_release(&p->msg, p->pool);
	http_parser_init(p, (enum http_kind)p->kind, p->pool, p->on_body, p->owner);
}

void http_parser_expect(struct http_parser *p, uint8_t method)
{
	p->req_method = method;
}

bool http_idle(const struct http_parser *p)
{
	return !p->in_message && !p->end_pending;
}

/*
 * A well-formed version llhttp does not accept ("HTTP/1.2", "HTTP/3.1") is
 * reported at the CR after it: a version kage does not speak, 505. Garbage
 * ("HTTP/x.y", "HTTP/1x") is reported at the bad byte: 400.
 */
static uint16_t version_error_status(const struct http_parser *p)
{
	const char *e = llhttp_get_error_pos(&p->ll);
	/* At the end of the input: llhttp judged the version as soon as its
	 * last digit arrived, so it was well-formed (and there is nothing
	 * there to read). */
	if (!e || e < p->input)
		return 400;
	if (e >= p->input_end)
		return 505;
	return *e == '\r' ? 505 : 400;
}

static enum http_event parse_error(struct http_parser *p, llhttp_errno_t err)
{
	/* A callback gave its own verdict; llhttp reports it as some
	 * HPE_CB_* or HPE_USER error depending on the callback. */
	if (p->error_status)
		return HEV_ERROR;
	if (p->oom) {
		p->error_status = 503;
		p->error_reason = "out of memory for the head";
		return HEV_ERROR;
	}
	p->error_reason = llhttp_get_error_reason(&p->ll);
	if (p->kind == HTTP_KIND_RESPONSE) {
		p->error_status = 502;
	} else if (err == HPE_INVALID_VERSION) {
		p->error_status = version_error_status(p);
	} else if (err == HPE_PAUSED_H2_UPGRADE) {
		p->error_status = 505;
		p->error_reason = "HTTP/2 is not supported";
	} else {
		p->error_status = 400;
	}
	return HEV_ERROR;
}

/*
 * Line-level rules llhttp 8.1.0 does not enforce, checked on the head's
 * bytes as they are fed (across buffer boundaries):
 * - every line ends with CRLF (RFC 9112 2.2): strict llhttp still accepts
 *   a bare LF after the request or status line and as the blank line;
 * - no line starts with a space or a tab: that is obs-fold (RFC 9112 5.2,
 *   the CVE-2024-27982 class), which llhttp folds into the previous value
 *   (or, after an empty value, takes as the value itself).
 * Returns why the bytes are refused, or NULL.
 */
static const char *check_lines(struct http_parser *p, const char *data, size_t n)
{
	if (n && p->after_lf && (data[0] == ' ' || data[0] == '\t'))
		return "obsolete line folding";
	const char *end = data + n, *lf = data;
	while ((lf = memchr(lf, '\n', (size_t)(end - lf)))) {
		char before = lf > data ? lf[-1] : p->last_byte;
		if (before != '\r')
			return "bare LF line ending";
		if (lf + 1 < end && (lf[1] == ' ' || lf[1] == '\t'))
			return "obsolete line folding";
		lf++;
	}
	p->after_lf = n && data[n - 1] == '\n';
	return NULL;
}

enum http_event http_parse(struct http_parser *p, const char *data, size_t len, size_t *used)
{
	*used = 0;
	if (p->end_pending) {
		p->end_pending = false;
		return HEV_END;
	}
	if (p->error_status)
		return HEV_ERROR;
	if (llhttp_get_errno(&p->ll) == HPE_PAUSED)
		llhttp_resume(&p->ll);

	/* Feed a head (and the empty lines a parser skips before one) no
	 * more than one byte past the limit. */
	bool head_phase = !p->in_message || p->in_head;
	size_t feed = len;
	if (head_phase && feed > (size_t)HTTP_HEAD_MAX + 1 - p->head_bytes)
		feed = (size_t)HTTP_HEAD_MAX + 1 - p->head_bytes;

	p->input = data;
	p->input_end = data + feed;
	llhttp_errno_t err = llhttp_execute(&p->ll, data, feed);
	size_t n = err == HPE_OK ? feed : (size_t)(llhttp_get_error_pos(&p->ll) - data);
	*used = n;

	if (head_phase) {
		const char *bad = check_lines(p, data, n);
		if (bad) {
			p->error_status = p->kind == HTTP_KIND_REQUEST ? 400 : 502;
			p->error_reason = bad;
			return HEV_ERROR;
		}
		if (p->head_ready)
			p->after_lf = false;	/* the head ended here: a body or the next message follows */
		if (n)
			p->last_byte = data[n - 1];
		p->head_bytes += (uint32_t)n;
		if (p->head_bytes > HTTP_HEAD_MAX) {
			/* Past the limit, whether in a head or still in the empty
			 * lines before one (which would otherwise leave nothing to
			 * feed and no verdict: a peer could stall the parser). */
			bool in_head = p->in_head || p->head_ready;
			p->error_status = in_head ? head_too_big(p)
						  : p->kind == HTTP_KIND_REQUEST ? 400 : 502;
			p->error_reason = in_head ? "head too large" : "too many empty lines";
			return HEV_ERROR;
		}
	}

	/* A body byte never begins a line end: a body ending in CR followed
	 * by LF is a bare LF before the next message (fuzz_request found
	 * kage reading the pair as an empty line). */
	if (!head_phase)
		p->last_byte = 0;

	switch (err) {
	case HPE_OK:
		return HEV_MORE;
	case HPE_PAUSED:
		if (p->head_ready) {
			p->head_ready = false;
			if (p->end_ready) {
				/* A head with no body: its end comes with the next call. */
				p->end_ready = false;
				p->end_pending = true;
				p->head_bytes = 0;
			}
			return HEV_HEAD;
		}
		if (p->end_ready) {
			p->end_ready = false;
			p->head_bytes = 0;
			return HEV_END;
		}
		return HEV_MORE;
	case HPE_PAUSED_UPGRADE:
		p->head_ready = false;
		p->end_ready = false;
		p->head_bytes = 0;
		return HEV_UPGRADE;
	default:
		return parse_error(p, err);
	}
}

enum http_event http_finish(struct http_parser *p)
{
	if (!p->in_message)
		return HEV_MORE;
	if (p->in_head || !llhttp_message_needs_eof(&p->ll)) {
		p->error_status = p->kind == HTTP_KIND_RESPONSE ? 502 : 400;
		p->error_reason = "connection closed mid-message";
		return HEV_ERROR;
	}
	if (llhttp_get_errno(&p->ll) == HPE_PAUSED) {
		/* Paused right at the head, llhttp has not entered the
		 * body-until-close state yet: let it, with no bytes, first. */
		llhttp_resume(&p->ll);
		p->input = p->input_end = NULL;
		llhttp_execute(&p->ll, "", 0);
	}
	llhttp_errno_t err = llhttp_finish(&p->ll);
	if ((err == HPE_OK || err == HPE_PAUSED) && p->end_ready) {
		p->end_ready = false;
		return HEV_END;
	}
	return parse_error(p, err);
}

/* --- tables ---------------------------------------------------------------------- */

/* llhttp_method_name() aborts on values it does not know: keep our own table. */
static const char *const method_names[256] = {
#define METHOD_NAME(num, name, string) [num] = #string,
	HTTP_ALL_METHOD_MAP(METHOD_NAME)
#undef METHOD_NAME
};

const char *http_method_name(uint8_t method)
{
	return method_names[method] ? method_names[method] : "UNKNOWN";
}

bool http_method_idempotent(uint8_t method)
{
	switch (method) {
	case HTTP_GET:
	case HTTP_HEAD:
	case HTTP_PUT:
	case HTTP_DELETE:
	case HTTP_OPTIONS:
	case HTTP_TRACE:
		return true;
	default:
		return false;
	}
}

int http_method_lookup(const char *name)
{
	for (int m = 0; m < 256; m++)
		if (method_names[m] && strcmp(method_names[m], name) == 0)
			return m;
	return -1;
}

const char *http_status_reason(unsigned status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 204: return "No Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 417: return "Expectation Failed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}
