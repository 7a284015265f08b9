#include "head.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "util.h"

/* --- rules ------------------------------------------------------------------ */

static struct head_rule *find_rule(struct head_rules *r, const char *name, size_t len)
{
	for (unsigned i = 0; i < r->n; i++)
		if (r->rule[i].name_len == len && ascii_casecmp(r->rule[i].name, name, len) == 0)
			return &r->rule[i];
	return NULL;
}

static void add_rule(struct head_rules *r, const struct cfg_header_edit *e)
{
	size_t len = strlen(e->name);
	struct head_rule *h = find_rule(r, e->name, len);
	if (!h)
		h = &r->rule[r->n++];
	h->name = e->name;
	h->name_len = len;
	h->value = e->remove ? NULL : e->value;
	h->value_len = e->remove ? 0 : strlen(e->value);
}

/*
 * '*' rules first, then this backend's, each in command-line order: a
 * later rule for the same name replaces an earlier one, so a backend's own
 * rule beats a '*' rule whatever the order they were given in.
 */
int head_rules_build(struct head_rules *r, const struct kage_config *cfg, int backend)
{
	memset(r, 0, sizeof *r);
	if (cfg->nedits) {
		r->rule = calloc(cfg->nedits, sizeof *r->rule);
		if (!r->rule)
			return -1;
	}
	for (unsigned pass = 0; pass < 2; pass++)
		for (unsigned i = 0; i < cfg->nedits; i++)
			if (cfg->edits[i].backend == (pass ? backend : -1))
				add_rule(r, &cfg->edits[i]);
	const struct cfg_backend *b = &cfg->backends[backend];
	char host[300];
	int n = snprintf(host, sizeof host, "%s:%u", b->host, (unsigned)b->port);
	r->host = strdup(host);
	r->host_len = (size_t)n;
	return r->host ? 0 : -1;
}

void head_rules_free(struct head_rules *r)
{
	free(r->rule);
	free((void *)r->host);
	memset(r, 0, sizeof *r);
}

/* --- writing ------------------------------------------------------------------- */

struct out {
	char *p;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (!n)
		return;	/* s may be NULL (an empty head has no store) */
	memcpy(o->p, s, n);
	o->p += n;
}

static void put_str(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_header(struct out *o, const char *name, size_t nlen, const char *value,
		       size_t vlen)
{
	put(o, name, nlen);
	put(o, ": ", 2);
	put(o, value, vlen);
	put(o, "\r\n", 2);
}

static void put_uint(struct out *o, unsigned v)
{
	o->p += fmt_dec(o->p, v);
}

static bool named(const struct http_msg *m, const struct http_hdr *h, const char *name, size_t len)
{
	return name && h->name_len == len && ascii_casecmp(m->store + h->name, name, len) == 0;
}

/* Does this client header go to the backend as is? */
bool head_passes_to_backend(const struct http_msg *m, const struct http_hdr *h,
			      const struct head_request_opts *o)
{
	if (h->flags & HDR_F_HOP)
		return false;
	if (h->id == HDR_X_FORWARDED_FOR)
		return false;	/* rewritten as one header */
	if (named(m, h, o->session_name, o->session_name_len) && o->session)
		return false;	/* kage's own value replaces a client's */
	if (o->rules && find_rule((struct head_rules *)o->rules, m->store + h->name, h->name_len))
		return false;	/* removed, or set by a rule */
	return true;
}

static size_t xff_size(const struct http_msg *m)
{
	size_t n = 0;
	for (unsigned i = 0; i < m->nhdr; i++)
		if (m->hdr[i].id == HDR_X_FORWARDED_FOR)
			n += m->hdr[i].value_len + 2;
	return n;
}

size_t head_request_size(const struct http_msg *m, const struct head_request_opts *o)
{
	size_t n = 32 + m->target_len + 2;	/* method, " ", target, " HTTP/1.1\r\n" */
	for (unsigned i = 0; i < m->nhdr; i++)
		n += m->hdr[i].name_len + m->hdr[i].value_len + 4;
	if (o->rules)
		for (unsigned i = 0; i < o->rules->n; i++)
			n += o->rules->rule[i].name_len + o->rules->rule[i].value_len + 4;
	n += sizeof "X-Forwarded-For: \r\n" + xff_size(m) + o->client_addr_len;
	n += o->session_name_len + o->session_len + 4;
	n += sizeof "Transfer-Encoding: chunked\r\n";
	n += sizeof "Connection: upgrade\r\n";
	if (o->rules)
		n += sizeof "Host: \r\n" + o->rules->host_len;
	return n + 2;
}

size_t head_xff_size(const struct http_msg *m, const struct head_request_opts *o)
{
	return xff_size(m) + o->client_addr_len;
}

/* The X-Forwarded-For value: what the client sent, then its address. */
size_t head_xff_write(const struct http_msg *m, const struct head_request_opts *o, char *buf)
{
	struct out out = { buf };
	for (unsigned i = 0; i < m->nhdr; i++) {
		const struct http_hdr *h = &m->hdr[i];
		if (h->id != HDR_X_FORWARDED_FOR || h->value_len == 0)
			continue;
		put(&out, m->store + h->value, h->value_len);
		put(&out, ", ", 2);
	}
	put(&out, o->client_addr, o->client_addr_len);
	return (size_t)(out.p - buf);
}

static void put_xff(struct out *out, const struct http_msg *m, const struct head_request_opts *o)
{
	put_str(out, "X-Forwarded-For: ");
	out->p += head_xff_write(m, o, out->p);
	put(out, "\r\n", 2);
}

size_t head_request_line(const struct http_msg *m, char *buf)
{
	struct out out = { buf };
	put_str(&out, http_method_name(m->method));
	put(&out, " ", 1);
	put(&out, m->store + m->target, m->target_len);
	put_str(&out, " HTTP/1.1\r\n");
	return (size_t)(out.p - buf);
}

/* What kage adds for this hop's framing, and the blank line. */
size_t head_request_framing(const struct http_msg *m, const struct head_request_opts *o, char *buf)
{
	struct out out = { buf };
	if (o->chunked)
		put_str(&out, "Transfer-Encoding: chunked\r\n");
	if (m->upgrade) {
		size_t len;
		const char *up = msg_header(m, HDR_UPGRADE, &len);
		if (up)
			put_header(&out, "Upgrade", 7, up, len);
		put_str(&out, "Connection: upgrade\r\n");
	}
	put(&out, "\r\n", 2);
	return (size_t)(out.p - buf);
}

size_t head_request_write(const struct http_msg *m, const struct head_request_opts *o, char *buf)
{
	struct out out = { buf };
	out.p += head_request_line(m, out.p);
	if (m->host_count == 0 && o->rules)
		put_header(&out, "Host", 4, o->rules->host, o->rules->host_len);
	for (unsigned i = 0; i < m->nhdr; i++) {
		const struct http_hdr *h = &m->hdr[i];
		if (head_passes_to_backend(m, h, o))
			put_header(&out, m->store + h->name, h->name_len, m->store + h->value,
				   h->value_len);
	}
	if (o->rules)
		for (unsigned i = 0; i < o->rules->n; i++) {
			const struct head_rule *r = &o->rules->rule[i];
			if (r->value)
				put_header(&out, r->name, r->name_len, r->value, r->value_len);
		}
	if (o->client_addr)
		put_xff(&out, m, o);
	if (o->session)
		put_header(&out, o->session_name, o->session_name_len, o->session, o->session_len);
	out.p += head_request_framing(m, o, out.p);
	return (size_t)(out.p - buf);
}

size_t head_response_size(const struct http_msg *m, const struct head_response_opts *o)
{
	size_t n = 32 + m->reason_len;
	for (unsigned i = 0; i < m->nhdr; i++)
		n += m->hdr[i].name_len + m->hdr[i].value_len + 4;
	n += sizeof "Transfer-Encoding: chunked\r\n" + sizeof "Connection: keep-alive\r\n";
	n += sizeof "Connection: upgrade\r\n";
	return n + 2;
}

static void put_status_line(struct out *out, const struct http_msg *m)
{
	put_str(out, "HTTP/1.1 ");
	put_uint(out, m->status);
	put(out, " ", 1);
	if (m->reason_len)
		put(out, m->store + m->reason, m->reason_len);
	put(out, "\r\n", 2);
}

static void put_end_to_end(struct out *out, const struct http_msg *m)
{
	for (unsigned i = 0; i < m->nhdr; i++) {
		const struct http_hdr *h = &m->hdr[i];
		if (!(h->flags & HDR_F_HOP))
			put_header(out, m->store + h->name, h->name_len, m->store + h->value,
				   h->value_len);
	}
}

size_t head_response_write(const struct http_msg *m, const struct head_response_opts *o, char *buf)
{
	struct out out = { buf };
	put_status_line(&out, m);
	put_end_to_end(&out, m);
	if (m->upgrade) {
		size_t len;
		const char *up = msg_header(m, HDR_UPGRADE, &len);
		if (up)
			put_header(&out, "Upgrade", 7, up, len);
		put_str(&out, "Connection: upgrade\r\n");
	} else {
		if (o->chunked)
			put_str(&out, "Transfer-Encoding: chunked\r\n");
		if (o->close)
			put_str(&out, "Connection: close\r\n");
		else if (o->keep_alive_10)
			put_str(&out, "Connection: keep-alive\r\n");
	}
	put(&out, "\r\n", 2);
	return (size_t)(out.p - buf);
}

size_t head_interim_write(const struct http_msg *m, char *buf)
{
	struct out out = { buf };
	put_status_line(&out, m);
	put_end_to_end(&out, m);
	put(&out, "\r\n", 2);
	return (size_t)(out.p - buf);
}
