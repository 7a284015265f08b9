/*
 * fuzz_diff: the comparison engine (src/diff.c).
 *
 * Input: byte 0 the content types and codings, byte 1 the options (see
 * make_seeds.py for the bits), then the master's body, "\n@@@\n", the
 * shadow's body, and optionally "\n@@@\n" and a reference's body (else the
 * reference answers like the shadow).
 *
 * Checks:
 * - diff_compare() of master against shadow and against the reference,
 *   diff_mark_noise(), diff_matches() and diff_place() (with small and
 *   large buffers) on every item run clean under ASan/UBSan;
 * - every item is well formed: a JSON body item's `where` is an RFC 6901
 *   pointer (empty, or '/'-separated with '~' only as ~0 or ~1), both its
 *   values are JSON text (jansson parses them; numbers too large for
 *   jansson's doubles are allowed), the absent side of an added/removed
 *   member is NULL; byte ranges are ordered and the offset lies in the
 *   first range that is not noise; diff_place() writes what it returns;
 * - a response compared with itself (a copy in other buffers) yields no
 *   item at all;
 * - a JSON document compared with jansson's re-serialisation of it (keys
 *   sorted or reversed, other whitespace, \u escapes) yields no body item,
 *   when it holds no reals (their spelling is jansson's choice) and no
 *   duplicate keys.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "diff.h"
#include "fuzz_check.h"

static struct diff_result *res_shadow, *res_ref, *res_self, *res_json;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	res_shadow = diff_result_new();
	res_ref = diff_result_new();
	res_self = diff_result_new();
	res_json = diff_result_new();
	return 0;
}

/* --- building responses ------------------------------------------------------- */

static const char *const types[4] = {
	"application/json", "text/plain; charset=utf-8", "application/problem+json; charset=utf-8",
	NULL,
};

struct side {
	struct diff_header hdr[4];
	size_t nhdr;
	uint8_t *body;		/* owned: the (encoded) body */
	size_t len;
	struct diff_response r;
};

/* gzip (wbits 31) or zlib (15) of `in`. */
static uint8_t *compress_to(const uint8_t *in, size_t len, int wbits, size_t *out_len)
{
	z_stream zs;
	memset(&zs, 0, sizeof zs);
	if (deflateInit2(&zs, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	size_t cap = deflateBound(&zs, len) + 32;
	uint8_t *out = malloc(cap);
	if (!out)
		abort();
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)len;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
		abort();
	*out_len = zs.total_out;
	deflateEnd(&zs);
	return out;
}

/* type: index into types[]; coding: 0 none, 1 gzip, 2 deflate, 3 a gzip
 * header over raw bytes (undecodable). status, extra header value. */
static void side_build(struct side *s, const uint8_t *body, size_t len, unsigned type,
		       unsigned coding, int status, const char *xval, bool truncated)
{
	memset(s, 0, sizeof *s);
	if (types[type]) {
		s->hdr[s->nhdr++] = (struct diff_header){ "Content-Type", 12, types[type],
							  strlen(types[type]) };
	}
	switch (coding) {
	case 1:
		s->body = compress_to(body, len, 31, &s->len);
		s->hdr[s->nhdr++] = (struct diff_header){ "Content-Encoding", 16, "gzip", 4 };
		break;
	case 2:
		s->body = compress_to(body, len, 15, &s->len);
		s->hdr[s->nhdr++] = (struct diff_header){ "content-encoding", 16, "deflate", 7 };
		break;
	default:
		s->len = len;
		s->body = malloc(len ? len : 1);
		if (!s->body)
			abort();
		memcpy(s->body, body, len);
		if (coding == 3)
			s->hdr[s->nhdr++] = (struct diff_header){ "Content-Encoding", 16, "gzip", 4 };
	}
	s->hdr[s->nhdr++] = (struct diff_header){ "X-Var", 5, xval, strlen(xval) };
	s->r = (struct diff_response){
		.status = status,
		.headers = s->hdr,
		.nheaders = s->nhdr,
		.body = s->body,
		.body_len = truncated ? s->len / 2 : s->len,
		.body_total = s->len,
		.body_crc = (uint32_t)crc32(0, s->body, (uInt)s->len),
	};
}

/* The same response in buffers of its own. */
static void side_copy(struct side *to, const struct side *from)
{
	*to = *from;
	to->body = malloc(from->len ? from->len : 1);
	if (!to->body)
		abort();
	memcpy(to->body, from->body, from->len);
	to->r.headers = to->hdr;
	to->r.body = to->body;
}

static void side_free(struct side *s)
{
	free(s->body);
	s->body = NULL;
}

/* --- checking items ------------------------------------------------------------ */

static bool pointer_valid(const char *p)
{
	if (!*p)
		return true;
	if (*p != '/')
		return false;
	for (; *p; p++)
		if (*p == '~' && p[1] != '0' && p[1] != '1')
			return false;
	return true;
}

/* Is [s, s+n) one JSON value? Numbers past jansson's range count as JSON;
 * so do bytes that are not UTF-8 inside strings (diff.c's reader does not
 * validate UTF-8: it passes a document's bytes through, and the diff log
 * writer escapes them; jansson does), and member names holding \u0000
 * (valid JSON that jansson cannot represent). */
static bool json_value_ok(const char *s, size_t n, char *why, size_t whylen)
{
	json_error_t err;
	json_t *j = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	if (j) {
		json_decref(j);
		return true;
	}
	snprintf(why, whylen, "%s at %d", err.text, err.position);
	return json_error_code(&err) == json_error_numeric_overflow ||
	       json_error_code(&err) == json_error_invalid_utf8 ||
	       json_error_code(&err) == json_error_null_byte_in_key;
}

static void touch(const char *p, size_t n)
{
	volatile char sink = 0;
	for (size_t i = 0; i < n; i++)
		sink ^= p[i];
	(void)sink;
}

static void check_items(const struct diff_result *r, bool json_body)
{
	size_t n = diff_count(r);
	for (size_t i = 0; i < n; i++) {
		const struct diff_item *it = diff_get(r, i);
		FUZZ_CHECK(it != NULL, "item %zu of %zu", i, n);
		if (it->master)
			touch(it->master, it->master_len);
		if (it->shadow)
			touch(it->shadow, it->shadow_len);
		char place[512], tiny[4];
		size_t pl = diff_place(it, place, sizeof place);
		FUZZ_CHECK(pl < sizeof place && strlen(place) == pl, "diff_place length %zu", pl);
		size_t tl = diff_place(it, tiny, sizeof tiny);
		FUZZ_CHECK(tl < sizeof tiny && strlen(tiny) == tl && memcmp(tiny, place, tl) == 0,
		           "diff_place into 4 bytes: %zu", tl);
		FUZZ_CHECK(diff_place(it, tiny, 0) == 0, "diff_place into 0 bytes");

		switch (it->kind) {
		case DIFF_STATUS:
		case DIFF_ERROR:
			FUZZ_CHECK(it->where_type == WHERE_NONE, "status/error item with a where");
			break;
		case DIFF_HEADER:
			FUZZ_CHECK(it->where_type == WHERE_TEXT && it->where && *it->where, "header item");
			break;
		case DIFF_BODY:
			if (it->where_type == WHERE_TEXT) {
				FUZZ_CHECK(json_body, "a JSON pointer on a non-JSON body: %s", it->where);
				FUZZ_CHECK(it->where && pointer_valid(it->where), "bad pointer \"%s\"",
				           it->where ? it->where : "(null)");
				FUZZ_CHECK(pointer_valid(place), "bad place \"%s\"", place);
				char why[200] = "";
				FUZZ_CHECK(it->master || it->change == CHANGE_ADDED, "master side missing");
				FUZZ_CHECK(it->shadow || it->change == CHANGE_REMOVED, "shadow side missing");
				FUZZ_CHECK(!(it->change == CHANGE_ADDED && it->master), "added with a master value");
				FUZZ_CHECK(!(it->change == CHANGE_REMOVED && it->shadow), "removed with a shadow value");
				if (it->master)
					FUZZ_CHECK(json_value_ok(it->master, it->master_len, why, sizeof why),
					           "master value at %s is not JSON (%s): %.*s", it->where, why,
					           (int)it->master_len, it->master);
				if (it->shadow)
					FUZZ_CHECK(json_value_ok(it->shadow, it->shadow_len, why, sizeof why),
					           "shadow value at %s is not JSON (%s): %.*s", it->where, why,
					           (int)it->shadow_len, it->shadow);
			} else {
				FUZZ_CHECK(it->where_type == WHERE_OFFSET, "body item where_type %d",
				           it->where_type);
				const struct diff_range *first = NULL;
				for (size_t k = 0; k < it->nranges; k++) {
					const struct diff_range *g = &it->ranges[k];
					FUZZ_CHECK(g->start <= g->end && g->shadow_start <= g->shadow_end,
					           "range %zu inverted", k);
					if (k)
						FUZZ_CHECK(g->start >= it->ranges[k - 1].end &&
							           g->shadow_start >= it->ranges[k - 1].shadow_end,
						           "ranges out of order at %zu", k);
					if (!first && !g->noise)
						first = g;
				}
				if (!first && it->nranges)
					first = &it->ranges[0];
				if (first)
					FUZZ_CHECK(it->offset >= first->start &&
						           it->offset <= (first->end > first->start ? first->end : first->start),
					           "offset %llu outside its range [%llu, %llu)",
					           (unsigned long long)it->offset,
					           (unsigned long long)first->start,
					           (unsigned long long)first->end);
			}
			break;
		}
	}
	(void)diff_matches(r);
	(void)diff_truncated(r);
}

/* --- the re-serialisation oracle ---------------------------------------------- */

static bool has_real(json_t *j)
{
	if (json_is_real(j))
		return true;
	if (json_is_array(j)) {
		size_t i;
		json_t *v;
		json_array_foreach(j, i, v)
			if (has_real(v))
				return true;
	} else if (json_is_object(j)) {
		const char *k;
		json_t *v;
		json_object_foreach(j, k, v)
			if (has_real(v))
				return true;
	}
	return false;
}

/* No body difference between a JSON body and jansson's spelling of it. */
static void check_reserialised(const struct diff_options *opt, const uint8_t *body, size_t len,
			       uint8_t how)
{
	json_error_t err;
	/* jansson stops reading at a NUL byte outside strings (it takes it for
	 * the end of the input): such a body is not JSON, whatever it says. */
	if (memchr(body, 0, len))
		return;
	json_t *j = json_loadb((const char *)body, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
	if (!j)
		return;
	if (has_real(j)) {
		json_decref(j);
		return;
	}
	size_t flags = JSON_ENCODE_ANY | ((how & 1) ? JSON_SORT_KEYS : 0) |
		       ((how & 2) ? JSON_INDENT(3) : JSON_COMPACT) | ((how & 4) ? JSON_ENSURE_ASCII : 0);
	char *text = json_dumps(j, flags);
	json_decref(j);
	if (!text)
		return;
	struct side a, b;
	side_build(&a, body, len, 0, 0, 200, "x", false);
	side_build(&b, (const uint8_t *)text, strlen(text), 0, 0, 200, "x", false);
	diff_result_reset(res_json);
	diff_compare(opt, &a.r, &b.r, res_json);
	for (size_t i = 0; i < diff_count(res_json); i++) {
		const struct diff_item *it = diff_get(res_json, i);
		FUZZ_CHECK(it->kind != DIFF_BODY, "a body item between a document and its re-spelling %s "
		           "at %s: master %.*s shadow %.*s; re-spelt: %s",
		           it->where_type == WHERE_TEXT ? "(json)" : "(bytes)",
		           it->where_type == WHERE_TEXT ? it->where : "-", (int)it->master_len,
		           it->master ? it->master : "", (int)it->shadow_len, it->shadow ? it->shadow : "",
		           text);
	}
	side_free(&a);
	side_free(&b);
	free(text);
}

/* --- the target ------------------------------------------------------------------- */

static const char *const ignore_sets[4][3] = {
	{ NULL },
	{ "/ts", "/items/*/t", NULL },
	{ "/*", NULL },
	{ "/a~1b~0c", "/*/*/x", "" },
};

static const uint8_t *split(const uint8_t *p, const uint8_t *end, size_t *len,
			    const uint8_t **next)
{
	static const char sep[] = "\n@@@\n";
	const uint8_t *q = p;
	while (q + 5 <= end && memcmp(q, sep, 5) != 0)
		q++;
	if (q + 5 > end) {
		*len = (size_t)(end - p);
		*next = NULL;
	} else {
		*len = (size_t)(q - p);
		*next = q + 5;
	}
	return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t b0 = data[0], b1 = data[1];
	const uint8_t *end = data + size, *next;
	size_t mlen, slen, rlen;
	const uint8_t *mb = split(data + 2, end, &mlen, &next);
	const uint8_t *sb = next ? split(next, end, &slen, &next) : mb;
	if (sb == mb)
		slen = mlen;
	const uint8_t *rb = next ? split(next, end, &rlen, &next) : sb;
	if (rb == sb)
		rlen = slen;

	const char *const *ign = ignore_sets[(b1 >> 1) & 3];
	size_t nign = 0;
	while (nign < 3 && ign[nign])
		nign++;
	struct diff_options opt = {
		.ignore_headers = (const char *const[]){ "X-Ignored" },
		.nignore_headers = 1,
		.ignore_json = ign,
		.nignore_json = nign,
		.max_items = (b1 & 8) ? 2 : 0,
		.excerpt_max = (b1 & 8) ? 3 : 0,
		.max_decoded = (b1 & 16) ? 64 : 0,
	};
	bool truncated = b1 & 1;
	unsigned mtype = b0 & 3, stype = (b0 >> 2) & 3;
	unsigned mcod = (b0 >> 4) & 3, scod = (b0 >> 6) & 3;

	struct side m, s, r, mcopy;
	side_build(&m, mb, mlen, mtype, mcod, 200, "1", truncated);
	side_build(&s, sb, slen, stype, scod, (b1 & 32) ? 404 : 200, (b1 & 64) ? "2" : "1", truncated);
	side_build(&r, rb, rlen, stype, scod, 200, "1", truncated);
	side_copy(&mcopy, &m);
	/* Both sides JSON and not truncated: JSON items are allowed. */
	bool json_pair = (mtype == 0 || mtype == 2) && (stype == 0 || stype == 2);

	diff_result_reset(res_shadow);
	diff_compare(&opt, &m.r, &s.r, res_shadow);
	check_items(res_shadow, json_pair);

	diff_result_reset(res_ref);
	diff_compare(&opt, &m.r, &r.r, res_ref);
	check_items(res_ref, json_pair);
	diff_mark_noise(res_shadow, res_ref);
	check_items(res_shadow, json_pair);
	diff_mark_all_noise(res_ref);
	FUZZ_CHECK(diff_matches(res_ref), "all noise yet no match");

	/* A response compared with itself differs nowhere. */
	diff_result_reset(res_self);
	size_t n = diff_compare(&opt, &m.r, &mcopy.r, res_self);
	if (n) {
		const struct diff_item *it = diff_get(res_self, 0);
		FUZZ_CHECK(n == 0, "%zu items comparing a response with itself; first kind %d where %s "
		           "master %.*s shadow %.*s", n, it->kind,
		           it->where_type == WHERE_TEXT ? it->where : "-", (int)it->master_len,
		           it->master ? it->master : "", (int)it->shadow_len, it->shadow ? it->shadow : "");
	}

	if (!truncated && mcod == 0)
		check_reserialised(&opt, mb, mlen, b1 >> 5);

	side_free(&m);
	side_free(&s);
	side_free(&r);
	side_free(&mcopy);
	return 0;
}
