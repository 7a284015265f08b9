/*
 * kage-replay: send one comparison record's request again, to a master and
 * a shadow, and compare their answers with kage's own diff engine.
 *
 *   kage-replay --master HOST:PORT --shadow HOST:PORT [--session ID]
 *               [--ignore-header NAME]... [--ignore-json PTR]... [--timeout S]
 *               [--full] [--curl] [RECORD_FILE | -]
 *
 * The input is one record, or a diff log (--session picks the record; by
 * default the first one). A record's `request` (method, target, version,
 * headers, base64 body) is sent as it was received; records of matching
 * requests carry none, so for them only the method and target are replayed.
 * Exit status: 0 the responses match, 1 they differ, 2 usage or network
 * errors (with --curl: 0 once the commands are printed).
 *
 * Blocking sockets and poll(): a CLI tool sending two requests needs no
 * ring. Responses are framed by kage's own parser (src/http.h), so what
 * counts as a response, its end and its de-chunked body is what kage sees.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "diff.h"
#include "http.h"
#include "pool.h"
#include "util.h"

#define EXIT_MATCH 0
#define EXIT_DIFFER 1
#define EXIT_TROUBLE 2
#define MAX_IGNORE 64
#define BODY_MAX (1024u * 1024 * 1024)	/* refuse to hold more of one response */
#define CLIP 60				/* value width in the diff table without --full */

struct options {
	const char *master, *shadow, *session, *file;
	const char *ignore_headers[MAX_IGNORE];
	size_t nignore_headers;
	const char *ignore_json[MAX_IGNORE];
	size_t nignore_json;
	double timeout;
	bool curl, full;
};

/* The request to replay, as the record tells it. */
struct replay {
	json_t *rec;			/* owns every string below */
	const char *method, *target, *version, *session, *endpoint;
	json_t *headers;		/* [[name, value], ...] or NULL */
	uint8_t *body;
	size_t body_len;
	uint64_t body_total;
	bool has_request, body_framed;
};

/* One backend's side of the exchange. */
struct leg {
	const char *role, *addr;
	int fd;
	struct http_parser parser;
	struct http_msg head;
	struct diff_header hdr[HTTP_MAX_HEADERS];
	uint8_t *body;
	size_t body_len, body_cap;
	int64_t start, end;
	const char *error;		/* what went wrong, NULL when it answered */
	bool done;
};

static void fail_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("kage-replay: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(EXIT_TROUBLE);
}

/* --- the record ---------------------------------------------------------------------- */

static int b64_value(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Standard base64 (as kage writes it); false on a byte outside it. */
static bool base64_decode(const char *s, uint8_t **out, size_t *len)
{
	size_t n = strlen(s), o = 0;
	uint8_t *p = malloc(n / 4 * 3 + 3);
	uint32_t acc = 0;
	int bits = 0;
	if (!p)
		return false;
	for (size_t i = 0; i < n && s[i] != '='; i++) {
		int v = b64_value((unsigned char)s[i]);
		if (v < 0) {
			free(p);
			return false;
		}
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			p[o++] = (uint8_t)(acc >> bits);
		}
	}
	*out = p;
	*len = o;
	return true;
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	if (!f)
		fail_usage("%s: %s", path, strerror(errno));
	size_t cap = 1 << 16, n = 0, got;
	char *buf = malloc(cap + 1);
	while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n < cap)
			continue;
		char *more = realloc(buf, (cap *= 2) + 1);
		if (!more)
			free(buf);
		buf = more;
	}
	if (!buf)
		fail_usage("out of memory reading %s", path);
	if (f != stdin)
		fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* The record of the wanted session (or the first), from one or many lines.
 * Lines that do not parse (a truncated last line) are skipped. */
static json_t *pick_record(const char *data, size_t len, const char *session)
{
	json_t *found = NULL;
	size_t nrec = 0;
	for (const char *p = data, *end = data + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		json_t *rec = json_loadb(p, n, 0, NULL);
		p += n + 1;
		if (!json_is_object(rec)) {
			json_decref(rec);
			continue;
		}
		nrec++;
		const char *s = json_string_value(json_object_get(rec, "session"));
		if (!found && (!session || (s && strcmp(s, session) == 0)))
			found = json_incref(rec);
		json_decref(rec);
	}
	if (!found && session)
		fail_usage("no record with session %s among %zu records", session, nrec);
	if (!found)
		fail_usage("no record in the input (one JSON object per line)");
	if (nrec > 1 && !session)
		fprintf(stderr, "kage-replay: %zu records; replaying the first (session %s); pick one with --session\n",
			nrec, json_string_value(json_object_get(found, "session")));
	return found;
}

static const char *str_field(json_t *obj, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? s : dflt;
}

static void load_request(struct replay *r, json_t *req)
{
	r->has_request = true;
	r->method = str_field(req, "method", r->method);
	r->target = str_field(req, "target", r->target);
	r->version = str_field(req, "version", "HTTP/1.1");
	r->headers = json_object_get(req, "headers");
	if (!base64_decode(str_field(req, "body", ""), &r->body, &r->body_len))
		fail_usage("the record's request body is not base64");
	json_t *total = json_object_get(req, "body_bytes");
	r->body_total = json_is_integer(total) ? (uint64_t)json_integer_value(total) : r->body_len;
	r->body_framed = r->body_total > 0;
	if (r->body_total > r->body_len)
		fprintf(stderr, "kage-replay: warning: the body was captured up to --capture-max: sending %zu of its %llu bytes\n",
			r->body_len, (unsigned long long)r->body_total);
}

static void load_record(struct replay *r, json_t *rec)
{
	memset(r, 0, sizeof *r);
	r->rec = rec;
	r->method = str_field(rec, "method", NULL);
	r->target = str_field(rec, "target", NULL);
	r->version = "HTTP/1.1";
	r->session = str_field(rec, "session", "?");
	r->endpoint = str_field(rec, "endpoint", "?");
	json_t *req = json_object_get(rec, "request");
	if (json_is_object(req))
		load_request(r, req);
	else
		fprintf(stderr, "kage-replay: the record carries no request (kage logs it with mismatches only): "
			"replaying %s %s without the client's headers\n", r->method ? r->method : "?",
			r->target ? r->target : "?");
	if (!r->method || !r->target)
		fail_usage("the record has no method or target");
}

/* --- the request bytes ------------------------------------------------------------------ */

/* Headers kage frames per hop, never replayed as recorded. */
static bool hop_header(const char *name)
{
	static const char *const hop[] = { "connection", "keep-alive", "proxy-connection", "te", "trailer",
					   "transfer-encoding", "upgrade", "content-length", "expect" };
	for (size_t i = 0; i < ARRAY_SIZE(hop); i++)
		if (strcasecmp(name, hop[i]) == 0)
			return true;
	return false;
}

static bool is_redacted(const char *v)
{
	if (strncmp(v, "redacted:", 9) != 0 || strlen(v) != 9 + 16)
		return false;
	return strspn(v + 9, "0123456789abcdef") == 16;
}

/* Calls fn(name, value, arg) for each replayed header; warns once about
 * values kage hashed (they go out as they are: the secret is gone). */
static void each_header(const struct replay *r, void (*fn)(const char *, const char *, void *), void *arg)
{
	size_t i;
	json_t *h;
	json_array_foreach(r->headers, i, h) {
		const char *name = json_string_value(json_array_get(h, 0));
		const char *value = json_string_value(json_array_get(h, 1));
		if (name && value && !hop_header(name))
			fn(name, value, arg);
	}
}

static void collect_redacted(const char *name, const char *value, void *arg)
{
	char *list = arg;
	if (is_redacted(value) && strlen(list) + strlen(name) + 3 < 512) {
		if (*list)
			strcat(list, ", ");
		strcat(list, name);
	}
}

static void warn_redacted(const struct replay *r)
{
	char list[512] = "";
	each_header(r, collect_redacted, list);
	if (*list)
		fprintf(stderr, "kage-replay: warning: sensitive headers %s: the record holds kage's hashes "
			"(redacted:...), not the client's values; sent as they are\n", list);
}

static bool has_header(const struct replay *r, const char *want)
{
	size_t i;
	json_t *h;
	json_array_foreach(r->headers, i, h) {
		const char *name = json_string_value(json_array_get(h, 0));
		if (name && strcasecmp(name, want) == 0)
			return true;
	}
	return false;
}

struct growbuf {
	char *p;
	size_t len, cap;
};

static void gb_add(struct growbuf *b, const void *s, size_t n)
{
	if (!n && b->p)
		return;		/* s may be NULL then (no body) */
	if (b->len + n + 1 > b->cap) {
		b->cap = MAX(b->cap * 2, b->len + n + 1024);
		b->p = realloc(b->p, b->cap);	/* on failure we exit: nothing to free */
		if (!b->p)
			fail_usage("out of memory");
	}
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void gb_printf(struct growbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void gb_printf(struct growbuf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof tmp)
		fail_usage("header line too long");
	gb_add(b, tmp, (size_t)n);
}

static void add_header_line(const char *name, const char *value, void *arg)
{
	struct growbuf *b = arg;
	gb_add(b, name, strlen(name));
	gb_add(b, ": ", 2);
	gb_add(b, value, strlen(value));
	gb_add(b, "\r\n", 2);
}

/* The request as one buffer; Host defaults to the backend's address. */
static void build_request(const struct replay *r, const char *addr, struct growbuf *b)
{
	memset(b, 0, sizeof *b);
	gb_printf(b, "%s %s %s\r\n", r->method, r->target, r->version);
	if (!has_header(r, "host"))
		gb_printf(b, "Host: %s\r\n", addr);
	each_header(r, add_header_line, b);
	if (r->body_framed || r->body_len)
		gb_printf(b, "Content-Length: %zu\r\n", r->body_len);
	gb_printf(b, "Connection: close\r\n\r\n");
	gb_add(b, r->body, r->body_len);
}

/* --- the network ------------------------------------------------------------------------- */

/* "HOST:PORT", "[V6]:PORT" or ":PORT" (localhost). */
static int dial(const char *addr, double timeout, const char **why)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	if (!colon || colon == addr + strlen(addr) - 1 || (size_t)(colon - addr) >= sizeof host) {
		*why = "not HOST:PORT";
		return -1;
	}
	size_t hl = (size_t)(colon - addr);
	memcpy(host, addr, hl);
	host[hl] = '\0';
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
	int rc = getaddrinfo(*host ? host : "127.0.0.1", colon + 1, &hints, &ai);
	if (rc) {
		*why = gai_strerror(rc);
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	/* connect() and send() honour SO_SNDTIMEO on Linux: a bounded wait
	 * without a non-blocking dance. */
	struct timeval tv = { .tv_sec = (time_t)timeout, .tv_usec = (long)((timeout - (double)(time_t)timeout) * 1e6) };
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		*why = errno == EINPROGRESS ? "connect timed out" : strerror(errno);
		close(fd);
		fd = -1;
	} else if (fd < 0) {
		*why = strerror(errno);
	}
	freeaddrinfo(ai);
	return fd;
}

static bool send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static void leg_body(void *owner, const char *at, size_t len)
{
	struct leg *l = owner;
	if (l->body_len + len > BODY_MAX) {
		l->error = "response body over 1 GiB";
		return;
	}
	if (l->body_len + len > l->body_cap) {
		l->body_cap = MAX(l->body_cap * 2, l->body_len + len + 4096);
		l->body = realloc(l->body, l->body_cap);	/* on failure we exit */
		if (!l->body)
			fail_usage("out of memory");
	}
	memcpy(l->body + l->body_len, at, len);
	l->body_len += len;
}

/* Feed received bytes to the parser; the leg is done at its final END. */
static void leg_feed(struct leg *l, struct bytepool *pool, const char *p, size_t n)
{
	while ((n || l->parser.end_pending) && !l->done) {
		size_t used;
		enum http_event e = http_parse(&l->parser, p, n, &used);
		p += used;
		n -= used;
		if (l->error) {		/* the body callback gave up */
			l->done = true;
			return;
		}
		if (e == HEV_MORE)
			return;
		if (e == HEV_HEAD && !l->parser.msg.interim) {
			msg_move(&l->head, &l->parser.msg);
		} else if (e == HEV_END && l->parser.msg.interim) {
			msg_release(&l->parser.msg, pool);	/* 100 Continue and the like */
		} else if (e == HEV_END) {
			l->done = true;
		} else if (e == HEV_UPGRADE || e == HEV_ERROR) {
			l->error = e == HEV_UPGRADE ? "unexpected 101 Switching Protocols" : "malformed response";
			l->done = true;
		}
	}
}

static void leg_read(struct leg *l, struct bytepool *pool)
{
	char buf[65536];
	ssize_t n = recv(l->fd, buf, sizeof buf, 0);
	if (n < 0 && errno == EINTR)
		return;
	if (n > 0) {
		leg_feed(l, pool, buf, (size_t)n);
	} else if (http_finish(&l->parser) == HEV_END) {
		l->done = true;	/* close-delimited */
	} else {
		l->error = n < 0 ? strerror(errno) : "connection closed before the response ended";
		l->done = true;
	}
	if (l->done)
		l->end = now_ns();
}

/* Wait for both responses (or the deadline), reading whichever is ready. */
static void await_legs(struct leg *legs, size_t n, struct bytepool *pool, int64_t deadline)
{
	for (;;) {
		struct pollfd pfd[2];
		struct leg *who[2];
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			if (!legs[i].done) {
				pfd[k] = (struct pollfd){ .fd = legs[i].fd, .events = POLLIN };
				who[k++] = &legs[i];
			}
		int64_t left = deadline - now_ns();
		if (!k)
			return;
		if (left <= 0 || poll(pfd, k, (int)(left / NS_PER_MSEC) + 1) == 0) {
			for (size_t i = 0; i < k; i++) {
				who[i]->error = "timed out";
				who[i]->done = true;
			}
			return;
		}
		for (size_t i = 0; i < k; i++)
			if (pfd[i].revents)
				leg_read(who[i], pool);
	}
}

static void leg_start(struct leg *l, const struct replay *r, const struct options *o, struct bytepool *pool)
{
	struct growbuf req;
	http_parser_init(&l->parser, HTTP_KIND_RESPONSE, pool, leg_body, l);
	int m = http_method_lookup(r->method);
	if (m >= 0)
		http_parser_expect(&l->parser, (uint8_t)m);	/* a HEAD response has no body */
	build_request(r, l->addr, &req);
	l->start = now_ns();
	l->fd = dial(l->addr, o->timeout, &l->error);
	if (l->fd >= 0 && !send_all(l->fd, req.p, req.len))
		l->error = strerror(errno);
	l->done = l->error != NULL;
	free(req.p);
}

/* --- comparing and printing ------------------------------------------------------------- */

static void leg_view(struct leg *l, struct diff_response *resp)
{
	const struct http_msg *m = &l->head;
	for (unsigned i = 0; i < m->nhdr; i++)
		l->hdr[i] = (struct diff_header){ msg_str(m, m->hdr[i].name), m->hdr[i].name_len,
						  msg_str(m, m->hdr[i].value), m->hdr[i].value_len };
	*resp = (struct diff_response){
		.status = m->status,
		.headers = l->hdr,
		.nheaders = m->nhdr,
		.body = l->body,
		.body_len = l->body_len,
		.body_total = l->body_len,
		.body_crc = (uint32_t)crc32(0, l->body, (uInt)l->body_len),
	};
}

/* Printable text of a value: control bytes escaped, clipped unless --full. */
static void escape(const char *v, size_t n, bool full, struct growbuf *out)
{
	memset(out, 0, sizeof *out);
	if (!v) {
		gb_add(out, "(absent)", 8);
		return;
	}
	size_t shown = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (!full && shown >= CLIP) {
			gb_add(out, "...", 3);
			break;
		}
		if (c == '\n' || c == '\r' || c == '\t')
			gb_printf(out, "\\%c", c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
		else if (c < 0x20 || c == 0x7f)
			gb_printf(out, "\\x%02x", c);
		else
			gb_add(out, &v[i], 1);
		shown += (c & 0xc0) != 0x80;	/* count characters, not UTF-8 bytes */
	}
	if (!out->p)
		gb_add(out, "", 0);
}

static const char *kind_name(const struct diff_item *it)
{
	static const char *const names[] = { "status", "header", "body", "error" };
	return names[it->kind];
}

static void where_text(const struct diff_item *it, char *buf, size_t cap)
{
	static const char *const change[] = { "", " (type)", " (added)", " (removed)" };
	if (it->where_type == WHERE_TEXT)
		snprintf(buf, cap, "%s%s", *it->where ? it->where : "(root)", change[it->change]);
	else if (it->where_type == WHERE_OFFSET)
		snprintf(buf, cap, "byte %llu", (unsigned long long)it->offset);
	else
		snprintf(buf, cap, "-");
}

static void print_diffs(const struct diff_result *res, bool full)
{
	size_t n = diff_count(res);
	int wk = 4, ww = 5, wm = 6;
	char where[512];
	struct growbuf mv, sv;
	for (size_t i = 0; i < n; i++) {
		const struct diff_item *it = diff_get(res, i);
		where_text(it, where, sizeof where);
		escape(it->master, it->master_len, full, &mv);
		ww = MAX(ww, (int)strlen(where));
		wm = MAX(wm, (int)mv.len);
		free(mv.p);
	}
	printf("%zu difference%s%s:\n  %-*s  %-*s  %-*s  %s\n", n, n == 1 ? "" : "s",
	       diff_truncated(res) ? " (more were left out)" : "", wk + 2, "KIND", ww, "WHERE", wm, "MASTER",
	       "SHADOW");
	for (size_t i = 0; i < n; i++) {
		const struct diff_item *it = diff_get(res, i);
		where_text(it, where, sizeof where);
		escape(it->master, it->master_len, full, &mv);
		escape(it->shadow, it->shadow_len, full, &sv);
		printf("  %-*s  %-*s  %-*s  %s\n", wk + 2, kind_name(it), ww, where, wm, mv.p, sv.p);
		free(mv.p);
		free(sv.p);
	}
}

static void print_leg(const struct leg *l)
{
	printf("  %-6s %-21s %3u  %8zu bytes  %8.2f ms\n", l->role, l->addr, l->head.status, l->body_len,
	       (double)(l->end - l->start) / 1e6);
}

/* What kage saw for this request: for comparison with the replay. */
static void print_recorded(const struct replay *r)
{
	json_t *diffs = json_object_get(r->rec, "diffs");
	size_t i, real = 0, noise = 0;
	json_t *d;
	json_array_foreach(diffs, i, d) {
		if (json_is_true(json_object_get(d, "noise")))
			noise++;
		else
			real++;
	}
	json_t *m = json_object_get(r->rec, "match");
	printf("  recorded: match %s, %zu difference%s (%zu more marked noise)\n",
	       json_is_true(m) ? "true" : json_is_false(m) ? "false" : "?", real, real == 1 ? "" : "s", noise);
}

/* --- curl ---------------------------------------------------------------------------------- */

static void put_quoted(const char *s)
{
	putchar('\'');
	for (; *s; s++) {
		if (*s == '\'')
			fputs("'\\''", stdout);	/* close, escaped quote, reopen */
		else
			putchar(*s);
	}
	putchar('\'');
}

static void curl_header(const char *name, const char *value, void *arg)
{
	char line[8192];
	/* curl sends "Name;" as an empty header, "Name:" would remove it. */
	snprintf(line, sizeof line, *value ? "%s: %s" : "%s;", name, value);
	fputs(" -H ", stdout);
	put_quoted(line);
}

/* curl adds these unless told not to; the record is what was sent. */
static void curl_suppress(const struct replay *r)
{
	static const char *const defaults[] = { "User-Agent", "Accept" };
	for (size_t i = 0; i < ARRAY_SIZE(defaults); i++)
		if (!has_header(r, defaults[i]))
			printf(" -H '%s:'", defaults[i]);
	if (r->body_len && !has_header(r, "content-type"))
		fputs(" -H 'Content-Type:'", stdout);
	if (r->body_len)
		fputs(" -H 'Expect:'", stdout);
}

static void curl_command(const struct replay *r, const char *role, const char *addr)
{
	printf("# %s %s\n", role, addr);
	if (r->body_len) {
		struct growbuf b64 = { 0 };
		static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		for (size_t i = 0; i < r->body_len; i += 3) {
			uint32_t v = (uint32_t)r->body[i] << 16 | (i + 1 < r->body_len ? r->body[i + 1] << 8 : 0) |
				     (i + 2 < r->body_len ? r->body[i + 2] : 0);
			char q[4] = { al[v >> 18 & 63], al[v >> 12 & 63], i + 1 < r->body_len ? al[v >> 6 & 63] : '=',
				      i + 2 < r->body_len ? al[v & 63] : '=' };
			gb_add(&b64, q, 4);
		}
		printf("printf %%s '%s' | base64 -d | ", b64.p);
		free(b64.p);
	}
	printf("curl -sS %s --path-as-is -g", strcmp(r->version, "HTTP/1.0") ? "--http1.1" : "--http1.0");
	if (strcmp(r->method, "HEAD") == 0) {
		fputs(" --head", stdout);
	} else if (strcmp(r->method, "GET") || r->body_len) {
		fputs(" -X ", stdout);
		put_quoted(r->method);
	}
	each_header(r, curl_header, NULL);
	curl_suppress(r);
	if (r->body_len)
		fputs(" --data-binary @-", stdout);
	char url[8192];
	if (r->target[0] == '/') {
		snprintf(url, sizeof url, "http://%s%s", addr, r->target);
	} else {
		snprintf(url, sizeof url, "http://%s/", addr);
		fputs(" --request-target ", stdout);
		put_quoted(r->target);
	}
	putchar(' ');
	put_quoted(url);
	putchar('\n');
}

/* --- main ------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fputs("usage: kage-replay --master HOST:PORT --shadow HOST:PORT [OPTIONS] [RECORD_FILE | -]\n\n"
	      "Replays the request of one kage comparison record (a JSON line; from a diff log,\n"
	      "--session picks it, else the first record) to a master and a shadow, compares the\n"
	      "two responses with kage's diff engine and prints the differences.\n\n"
	      "  --master HOST:PORT     the backend whose answer is the reference\n"
	      "  --shadow HOST:PORT     the backend compared against it\n"
	      "  --session ID           the record with this session id\n"
	      "  --ignore-header NAME   leave a response header out (repeatable)\n"
	      "  --ignore-json PTR      leave a JSON Pointer out, * = any segment (repeatable)\n"
	      "  --timeout SEC          per exchange (default 10)\n"
	      "  --full                 print differing values whole, not clipped\n"
	      "  --curl                 print the equivalent curl commands instead\n"
	      "  -h, --help             this text\n\n"
	      "Exit status: 0 the responses match, 1 they differ, 2 usage or network error.\n",
	      f);
}

static void add_ignore(const char **v, size_t *n, const char *s)
{
	if (*n >= MAX_IGNORE)
		fail_usage("too many ignore options (max %d)", MAX_IGNORE);
	v[(*n)++] = s;
}

static void parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longs[] = {
		{ "master", required_argument, NULL, 'm' },	   { "shadow", required_argument, NULL, 's' },
		{ "session", required_argument, NULL, 'S' },	   { "ignore-header", required_argument, NULL, 'H' },
		{ "ignore-json", required_argument, NULL, 'J' }, { "timeout", required_argument, NULL, 't' },
		{ "curl", no_argument, NULL, 'c' },		   { "full", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },		   { 0 },
	};
	int c;
	memset(o, 0, sizeof *o);
	o->timeout = 10;
	while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
		switch (c) {
		case 'm': o->master = optarg; break;
		case 's': o->shadow = optarg; break;
		case 'S': o->session = optarg; break;
		case 'H': add_ignore(o->ignore_headers, &o->nignore_headers, optarg); break;
		case 'J': add_ignore(o->ignore_json, &o->nignore_json, optarg); break;
		case 't': o->timeout = atof(optarg); break;
		case 'c': o->curl = true; break;
		case 'f': o->full = true; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(EXIT_TROUBLE);
		}
	}
	if (!o->master || !o->shadow)
		fail_usage("--master and --shadow are required (see --help)");
	if (!(o->timeout > 0 && o->timeout < 86400))
		fail_usage("--timeout: a number of seconds above 0");
	if (argc - optind > 1)
		fail_usage("one record file at most");
	o->file = optind < argc ? argv[optind] : "-";
}

static int compare_legs(struct leg *legs, const struct options *o)
{
	struct diff_options dopt = {
		.ignore_headers = o->ignore_headers,
		.nignore_headers = o->nignore_headers,
		.ignore_json = o->ignore_json,
		.nignore_json = o->nignore_json,
	};
	struct diff_response mr, sr;
	leg_view(&legs[0], &mr);
	leg_view(&legs[1], &sr);
	struct diff_result *res = diff_result_new();
	diff_compare(&dopt, &mr, &sr, res);
	int rc = diff_count(res) ? EXIT_DIFFER : EXIT_MATCH;
	if (rc == EXIT_MATCH)
		printf("no differences: the responses match\n");
	else
		print_diffs(res, o->full);
	diff_result_free(res);
	return rc;
}

static int replay_run(const struct replay *r, const struct options *o)
{
	struct bytepool pool;
	struct leg legs[2] = { { .role = "master", .addr = o->master, .fd = -1 },
			       { .role = "shadow", .addr = o->shadow, .fd = -1 } };
	bytepool_init(&pool, 64u << 20);
	for (int i = 0; i < 2; i++)
		leg_start(&legs[i], r, o, &pool);
	await_legs(legs, 2, &pool, now_ns() + sec_to_ns(o->timeout));
	int rc = EXIT_MATCH;
	for (int i = 0; i < 2; i++)
		if (legs[i].error) {
			fprintf(stderr, "kage-replay: %s %s: %s\n", legs[i].role, legs[i].addr, legs[i].error);
			rc = EXIT_TROUBLE;
		}
	if (rc == EXIT_MATCH) {
		for (int i = 0; i < 2; i++)
			print_leg(&legs[i]);
		print_recorded(r);
		rc = compare_legs(legs, o);
	}
	for (int i = 0; i < 2; i++) {
		if (legs[i].fd >= 0)
			close(legs[i].fd);
		msg_release(&legs[i].head, &pool);
		http_parser_reset(&legs[i].parser);
		free(legs[i].body);
	}
	bytepool_destroy(&pool);
	return rc;
}

int main(int argc, char **argv)
{
	struct options o;
	struct replay r;
	size_t len;
	parse_args(argc, argv, &o);
	char *data = read_all(o.file, &len);
	load_record(&r, pick_record(data, len, o.session));
	free(data);
	warn_redacted(&r);
	int rc;
	if (o.curl) {
		curl_command(&r, "master", o.master);
		curl_command(&r, "shadow", o.shadow);
		rc = 0;
	} else {
		printf("replaying %s %s (session %s, endpoint %s)\n", r.method, r.target, r.session, r.endpoint);
		fflush(stdout);
		rc = replay_run(&r, &o);
	}
	free(r.body);
	json_decref(r.rec);
	return rc;
}
