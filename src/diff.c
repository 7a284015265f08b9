/*
 * diff: compares two captured responses (contract in diff.h).
 *
 * Layout of this file: memory (arenas, growable buffers), items, status and
 * headers, content decoding, the JSON reader and its structural walk, the
 * bounded Myers diff shared by JSON arrays and byte tokens, byte bodies,
 * truncated captures, and noise marking.
 *
 * Two arenas per result: `keep` holds what items point at and lives until
 * diff_result_reset(); `scratch` holds parse trees, token tables and diff
 * traces and is rewound at the start of every diff_compare().
 */
#include "diff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "log.h"
#include "util.h"

#define DEFAULT_MAX_ITEMS	64
#define DEFAULT_EXCERPT		48
#define DEFAULT_MAX_DECODED	(16u << 20)

#define JSON_MAX_DEPTH		512

/* Byte diffs: the Myers bound in tokens, its work bound, and the largest
 * differing middle (per side) we tokenize at all. */
#define TOKEN_DMAX		1024
#define TOKEN_WORK_MAX		(64u << 20)
#define TOKEN_BYTES_MAX		(4u << 20)

/* JSON arrays of different lengths: alignment bounds. */
#define ARRAY_DMAX		256
#define ARRAY_WORK_MAX		(4u << 20)
#define ARRAY_LEN_MAX		(1u << 20)

/* ------------------------------------------------------------------ memory */

static void die_oom(void)
{
	log_error("diff: out of memory");
	abort();
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (!p)
		die_oom();
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p)
		die_oom();
	return p;
}

struct arena_block {
	struct arena_block *next;
	size_t cap, used;
	max_align_t data[];
};

struct arena {
	struct arena_block *head, *cur;
	size_t total;			/* capacity of all blocks */
};

#define ARENA_MIN	(64u << 10)
/* A reset keeps at most this much, so one huge comparison does not pin
 * its memory for the life of the process. */
#define ARENA_KEEP	(32u << 20)

static struct arena_block *arena_block_new(struct arena *a, size_t cap)
{
	struct arena_block *b = xmalloc(sizeof(*b) + cap);
	b->next = NULL;
	b->cap = cap;
	b->used = 0;
	a->total += cap;
	return b;
}

static void *arena_alloc(struct arena *a, size_t n)
{
	struct arena_block *b = a->cur;

	n = (n + 15) & ~(size_t)15;
	if (unlikely(!b || b->cap - b->used < n)) {
		size_t cap = MAX(MAX(n, (size_t)ARENA_MIN), a->total);
		struct arena_block *nb = arena_block_new(a, cap);
		if (b)
			b->next = nb;
		else
			a->head = nb;
		a->cur = b = nb;
	}
	void *p = (char *)b->data + b->used;
	b->used += n;
	return p;
}

static void arena_free_blocks(struct arena *a)
{
	struct arena_block *b = a->head;
	while (b) {
		struct arena_block *next = b->next;
		free(b);
		b = next;
	}
	a->head = a->cur = NULL;
	a->total = 0;
}

/* Rewind; several blocks become one of their total size, so the next round
 * of the same shape fits in one block. */
static void arena_rewind(struct arena *a)
{
	if (!a->head)
		return;
	if (a->head->next || a->total > ARENA_KEEP) {
		size_t cap = a->total > ARENA_KEEP ? ARENA_MIN : a->total;
		arena_free_blocks(a);
		a->head = a->cur = arena_block_new(a, cap);
		return;
	}
	a->head->used = 0;
	a->cur = a->head;
}

static char *arena_dup(struct arena *a, const void *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);
	if (n)
		memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* A growable byte buffer (decoded bodies, serialized JSON values). */
struct buf {
	char *p;
	size_t len, cap;
};

static void buf_reserve(struct buf *b, size_t extra)
{
	if (b->cap - b->len >= extra)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < extra)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

static void buf_put(struct buf *b, const void *s, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void buf_putc(struct buf *b, char c)
{
	buf_reserve(b, 1);
	b->p[b->len++] = c;
}

static void buf_release_if_big(struct buf *b, size_t keep)
{
	if (b->cap > keep) {
		free(b->p);
		b->p = NULL;
		b->cap = 0;
	}
	b->len = 0;
}

/* ------------------------------------------------------------ result, items */

/* Items carry per-range excerpts privately, so diff_mark_noise() can move an
 * item's excerpt with its offset without the bodies at hand. */
struct excerpt {
	const char *m, *s;
	size_t mlen, slen;
};

struct item_ext {
	struct diff_item it;
	const struct excerpt *ex;	/* one per range, or NULL */
};

struct jv;
struct jm;

struct diff_result {
	struct item_ext *items;
	size_t n, cap;
	bool truncated;
	struct arena keep;
	struct arena scratch;
	struct buf dec[2];		/* decoded bodies, master and shadow */
	struct buf text;		/* JSON serialization */
	/* JSON reader stacks, reused */
	struct jv *vstack;
	size_t vn, vcap;
	struct jm *mstack;
	size_t mn, mcap;
	z_stream zs;
	int zs_ready;
};

struct diff_result *diff_result_new(void)
{
	return calloc(1, sizeof(struct diff_result));
}

void diff_result_reset(struct diff_result *r)
{
	r->n = 0;
	r->truncated = false;
	arena_rewind(&r->keep);
}

void diff_result_free(struct diff_result *r)
{
	if (!r)
		return;
	arena_free_blocks(&r->keep);
	arena_free_blocks(&r->scratch);
	free(r->items);
	free(r->dec[0].p);
	free(r->dec[1].p);
	free(r->text.p);
	free(r->vstack);
	free(r->mstack);
	if (r->zs_ready)
		inflateEnd(&r->zs);
	free(r);
}

size_t diff_count(const struct diff_result *r)
{
	return r->n;
}

const struct diff_item *diff_get(const struct diff_result *r, size_t i)
{
	return i < r->n ? &r->items[i].it : NULL;
}

bool diff_truncated(const struct diff_result *r)
{
	return r->truncated;
}

/* The JSON walk's position: one frame per pointer segment. */
struct frame {
	const char *key;
	size_t klen;
	size_t index;
	bool is_index;
};

struct ign_pat {
	const char **seg;
	size_t *seglen;
	size_t nseg;
};

/* One diff_compare() call. */
struct ctx {
	struct diff_result *r;
	const struct diff_options *opt;
	size_t max_items, excerpt_max, max_decoded;
	size_t added;
	bool full;
	/* JSON walk */
	struct frame frames[JSON_MAX_DEPTH + 2];
	struct ign_pat *pats;
	size_t npats, nwords;
	uint64_t *alive;		/* nwords per depth */
};

static struct diff_item *item_new(struct ctx *c, enum diff_kind kind, enum diff_change change)
{
	struct diff_result *r = c->r;

	if (c->added >= c->max_items) {
		r->truncated = true;
		c->full = true;
		return NULL;
	}
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->items = xrealloc(r->items, r->cap * sizeof(*r->items));
	}
	struct item_ext *e = &r->items[r->n++];
	memset(e, 0, sizeof(*e));
	e->it.kind = kind;
	e->it.change = change;
	c->added++;
	return &e->it;
}

static struct item_ext *item_ext_of(struct diff_item *it)
{
	return container_of(it, struct item_ext, it);
}

static void item_set_texts(struct ctx *c, struct diff_item *it, const char *m, size_t ml,
			   const char *s, size_t sl)
{
	if (m) {
		it->master = arena_dup(&c->r->keep, m, ml);
		it->master_len = ml;
	}
	if (s) {
		it->shadow = arena_dup(&c->r->keep, s, sl);
		it->shadow_len = sl;
	}
}

/* ------------------------------------------------------------ status, errors */

static void compare_error(struct ctx *c, const struct diff_response *m, const struct diff_response *s)
{
	struct diff_item *it = item_new(c, DIFF_ERROR, CHANGE_VALUE);
	if (!it)
		return;
	item_set_texts(c, it, m->error, m->error ? strlen(m->error) : 0, s->error,
		       s->error ? strlen(s->error) : 0);
	it->where_type = WHERE_NONE;
	it->place = "error";
}

static void compare_status(struct ctx *c, int ms, int ss)
{
	char a[16], b[16];

	if (ms == ss)
		return;
	struct diff_item *it = item_new(c, DIFF_STATUS, CHANGE_VALUE);
	if (!it)
		return;
	int al = snprintf(a, sizeof(a), "%d", ms);
	int bl = snprintf(b, sizeof(b), "%d", ss);
	item_set_texts(c, it, a, (size_t)al, b, (size_t)bl);
	it->where_type = WHERE_NONE;
	it->place = "status";
}

/* ------------------------------------------------------------------ headers */

/* Framing and hop-by-hop headers, plus Date: never compared. */
static bool header_always_ignored(const char *n, size_t len)
{
	switch (len) {
	case 2:
		return span_is(n, len, "te");
	case 4:
		return span_is(n, len, "date");
	case 7:
		return span_is(n, len, "trailer") || span_is(n, len, "upgrade");
	case 10:
		return span_is(n, len, "connection") || span_is(n, len, "keep-alive");
	case 14:
		return span_is(n, len, "content-length");
	case 16:
		return span_is(n, len, "content-encoding") || span_is(n, len, "proxy-connection");
	case 17:
		return span_is(n, len, "transfer-encoding");
	}
	return false;
}

static bool header_ignored(const struct ctx *c, const char *n, size_t len)
{
	if (header_always_ignored(n, len))
		return true;
	for (size_t i = 0; i < c->opt->nignore_headers; i++) {
		const char *w = c->opt->ignore_headers[i];
		if (w && strlen(w) == len && ascii_casecmp(w, n, len) == 0)
			return true;
	}
	return false;
}

struct hdr {
	const char *name, *value;
	size_t nlen, vlen;
	size_t order;
};

static int hdr_cmp(const void *pa, const void *pb)
{
	const struct hdr *a = pa, *b = pb;
	int d = ascii_casecmp(a->name, b->name, MIN(a->nlen, b->nlen));
	if (d)
		return d;
	if (a->nlen != b->nlen)
		return a->nlen < b->nlen ? -1 : 1;
	return a->order < b->order ? -1 : a->order > b->order;
}

static bool is_ows(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* Compared headers of one side, sorted by name, repeats in arrival order. */
static struct hdr *headers_collect(struct ctx *c, const struct diff_response *resp, size_t *np)
{
	struct hdr *h = arena_alloc(&c->r->scratch, (resp->nheaders + 1) * sizeof(*h));
	size_t n = 0;

	for (size_t i = 0; i < resp->nheaders; i++) {
		const struct diff_header *x = &resp->headers[i];
		if (!x->name || header_ignored(c, x->name, x->name_len))
			continue;
		const char *v = x->value ? x->value : "";
		size_t vl = x->value ? x->value_len : 0;
		while (vl && is_ows(v[0])) {
			v++;
			vl--;
		}
		while (vl && is_ows(v[vl - 1]))
			vl--;
		h[n++] = (struct hdr){ x->name, v, x->name_len, vl, i };
	}
	if (n > 1)
		qsort(h, n, sizeof(*h), hdr_cmp);
	*np = n;
	return h;
}

static size_t header_group(const struct hdr *h, size_t i, size_t n)
{
	size_t j = i + 1;
	while (j < n && h[j].nlen == h[i].nlen && ascii_casecmp(h[j].name, h[i].name, h[i].nlen) == 0)
		j++;
	return j;
}

/* A repeated header's values joined by ", ", in scratch unless single. */
static const char *header_join(struct ctx *c, const struct hdr *h, size_t i, size_t j, size_t *len)
{
	if (j - i == 1) {
		*len = h[i].vlen;
		return h[i].value;
	}
	size_t total = 0;
	for (size_t k = i; k < j; k++)
		total += h[k].vlen + 2;
	char *p = arena_alloc(&c->r->scratch, total), *o = p;
	for (size_t k = i; k < j; k++) {
		if (k > i) {
			*o++ = ',';
			*o++ = ' ';
		}
		memcpy(o, h[k].value, h[k].vlen);
		o += h[k].vlen;
	}
	*len = (size_t)(o - p);
	return p;
}

static void header_item(struct ctx *c, const char *name, size_t nlen, const char *mv, size_t ml,
			const char *sv, size_t sl)
{
	enum diff_change ch = !mv ? CHANGE_ADDED : !sv ? CHANGE_REMOVED : CHANGE_VALUE;
	struct diff_item *it = item_new(c, DIFF_HEADER, ch);
	if (!it)
		return;
	char *w = arena_dup(&c->r->keep, name, nlen);
	for (size_t k = 0; k < nlen; k++)
		if (w[k] >= 'A' && w[k] <= 'Z')
			w[k] = (char)(w[k] + 32);
	it->where_type = WHERE_TEXT;
	it->where = w;
	it->where_len = nlen;
	it->place = w;
	item_set_texts(c, it, mv, ml, sv, sl);
}

static void compare_headers(struct ctx *c, const struct diff_response *m, const struct diff_response *s)
{
	size_t mn, sn, i = 0, j = 0;
	struct hdr *mh = headers_collect(c, m, &mn);
	struct hdr *sh = headers_collect(c, s, &sn);

	while ((i < mn || j < sn) && !c->full) {
		int d;
		if (i == mn)
			d = 1;
		else if (j == sn)
			d = -1;
		else {
			d = ascii_casecmp(mh[i].name, sh[j].name, MIN(mh[i].nlen, sh[j].nlen));
			if (!d && mh[i].nlen != sh[j].nlen)
				d = mh[i].nlen < sh[j].nlen ? -1 : 1;
		}
		size_t ie = d <= 0 ? header_group(mh, i, mn) : i;
		size_t je = d >= 0 ? header_group(sh, j, sn) : j;
		size_t ml = 0, sl = 0;
		const char *mv = d <= 0 ? header_join(c, mh, i, ie, &ml) : NULL;
		const char *sv = d >= 0 ? header_join(c, sh, j, je, &sl) : NULL;
		if (d != 0 || ml != sl || memcmp(mv, sv, ml) != 0) {
			const struct hdr *x = d <= 0 ? &mh[i] : &sh[j];
			header_item(c, x->name, x->nlen, mv, ml, sv, sl);
		}
		i = ie;
		j = je;
	}
}

/* First header named `name` (lowercase), or NULL. */
static const struct diff_header *header_find(const struct diff_response *r, const char *name)
{
	for (size_t i = 0; i < r->nheaders; i++)
		if (r->headers[i].name && span_is(r->headers[i].name, r->headers[i].name_len, name))
			return &r->headers[i];
	return NULL;
}

bool diff_is_json_type(const char *ct, size_t len)
{
	size_t end = 0, slash = 0;

	if (!ct)
		return false;
	while (len && is_ows(*ct)) {
		ct++;
		len--;
	}
	while (end < len && ct[end] != ';')
		end++;
	while (end && is_ows(ct[end - 1]))
		end--;
	while (slash < end && ct[slash] != '/')
		slash++;
	if (slash == 0 || slash + 1 >= end)
		return false;
	if (span_is(ct, end, "application/json"))
		return true;
	size_t sub = end - slash - 1;
	return sub > 5 && span_is(ct + end - 5, 5, "+json");
}

static bool response_is_json(const struct diff_response *r)
{
	const struct diff_header *h = header_find(r, "content-type");
	return h && diff_is_json_type(h->value, h->value_len);
}

/* ------------------------------------------------------------------ decoding */

enum coding { CODING_IDENTITY, CODING_GZIP, CODING_DEFLATE, CODING_UNKNOWN };

/* The one coding to undo. Stacked codings ("gzip, gzip") are not seen in
 * practice and are compared as received. */
static enum coding response_coding(const struct diff_response *r)
{
	enum coding found = CODING_IDENTITY;

	for (size_t i = 0; i < r->nheaders; i++) {
		const struct diff_header *h = &r->headers[i];
		if (!h->name || !span_is(h->name, h->name_len, "content-encoding"))
			continue;
		const char *v = h->value;
		size_t n = h->value ? h->value_len : 0, k = 0;
		while (k < n) {
			while (k < n && (is_ows(v[k]) || v[k] == ','))
				k++;
			size_t st = k;
			while (k < n && v[k] != ',' && !is_ows(v[k]))
				k++;
			if (k == st)
				continue;
			enum coding cd;
			if (span_is(v + st, k - st, "identity"))
				continue;
			else if (span_is(v + st, k - st, "gzip") || span_is(v + st, k - st, "x-gzip"))
				cd = CODING_GZIP;
			else if (span_is(v + st, k - st, "deflate"))
				cd = CODING_DEFLATE;
			else
				return CODING_UNKNOWN;
			if (found != CODING_IDENTITY)
				return CODING_UNKNOWN;
			found = cd;
		}
	}
	return found;
}

/*
 * Inflate in into out, at most cap bytes. wbits 15+32 reads zlib or gzip
 * (several gzip members back to back, as gzip(1) allows), -15 raw deflate.
 * Returns 0, or -1 on a corrupt or over-long stream.
 */
static int inflate_into(struct diff_result *r, struct buf *out, const uint8_t *in, size_t inlen,
			int wbits, size_t cap)
{
	z_stream *zs = &r->zs;
	int rc;

	if (!r->zs_ready) {
		memset(zs, 0, sizeof(*zs));
		if (inflateInit2(zs, wbits) != Z_OK)
			die_oom();
		r->zs_ready = 1;
	} else if (inflateReset2(zs, wbits) != Z_OK) {
		return -1;
	}
	out->len = 0;
	zs->next_in = (Bytef *)(uintptr_t)in;
	zs->avail_in = 0;
	size_t in_left = inlen;
	for (;;) {
		if (zs->avail_in == 0 && in_left) {
			zs->avail_in = (uInt)MIN(in_left, (size_t)1 << 30);
			in_left -= zs->avail_in;
		}
		buf_reserve(out, MIN(MAX(inlen * 4, (size_t)4096), cap + 1 - out->len));
		size_t room = MIN(out->cap - out->len, cap + 1 - out->len);
		zs->next_out = (Bytef *)out->p + out->len;
		zs->avail_out = (uInt)MIN(room, (size_t)1 << 30);
		uInt before = zs->avail_out;
		rc = inflate(zs, Z_NO_FLUSH);
		out->len += before - zs->avail_out;
		if (out->len > cap)
			return -1;
		if (rc == Z_STREAM_END) {
			size_t rest = zs->avail_in + in_left;
			if (wbits > 0 && rest >= 2 && zs->next_in[0] == 0x1f && zs->next_in[1] == 0x8b) {
				if (inflateReset(zs) != Z_OK)
					return -1;
				continue;
			}
			return 0;	/* trailing garbage is ignored, as browsers do */
		}
		if (rc == Z_BUF_ERROR && zs->avail_in == 0 && in_left == 0)
			return -1;	/* the stream stops early */
		if (rc != Z_OK && rc != Z_BUF_ERROR)
			return -1;
	}
}

/* The bytes to compare for one side: decoded when we can, else as received. */
static void body_decoded(struct ctx *c, const struct diff_response *resp, int side,
			 const uint8_t **out, size_t *outlen)
{
	enum coding cd = response_coding(resp);
	struct buf *b = &c->r->dec[side];

	*out = resp->body;
	*outlen = resp->body_len;
	if (cd == CODING_IDENTITY || cd == CODING_UNKNOWN || resp->body_len == 0)
		return;
	int rc = inflate_into(c->r, b, resp->body, resp->body_len, 15 + 32, c->max_decoded);
	/* "deflate" in the wild is sometimes raw deflate, without zlib's header. */
	if (rc < 0 && cd == CODING_DEFLATE)
		rc = inflate_into(c->r, b, resp->body, resp->body_len, -15, c->max_decoded);
	if (rc == 0) {
		*out = (const uint8_t *)b->p;
		*outlen = b->len;
	}
}

/* ---------------------------------------------------- common prefix, suffix */

/* Length of the common prefix of a and b, at most n; eight bytes a step. */
static size_t common_prefix(const uint8_t *a, const uint8_t *b, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t x, y;
		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		if (x != y)
			return i + ((size_t)__builtin_ctzll(x ^ y) >> 3);
	}
	while (i < n && a[i] == b[i])
		i++;
	return i;
}

/* Length of the common suffix of a[0..al) and b[0..bl), at most n. */
static size_t common_suffix(const uint8_t *a, size_t al, const uint8_t *b, size_t bl, size_t n)
{
	size_t q = 0;
	for (; q + 8 <= n; q += 8) {
		uint64_t x, y;
		memcpy(&x, a + al - q - 8, 8);
		memcpy(&y, b + bl - q - 8, 8);
		if (x != y)
			return q + ((size_t)__builtin_clzll(x ^ y) >> 3);
	}
	while (q < n && a[al - 1 - q] == b[bl - 1 - q])
		q++;
	return q;
}

/* ------------------------------------------------------------------ hashing */

#define HASH_K 0x9e3779b97f4a7c15ULL

static inline uint64_t hash_mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static uint64_t hash_bytes(const void *p, size_t n, uint64_t seed)
{
	const unsigned char *s = p;
	uint64_t h = seed ^ ((uint64_t)n * HASH_K);

	while (n >= 8) {
		uint64_t w;
		memcpy(&w, s, 8);
		h = (h ^ hash_mix(w)) * HASH_K;
		h = (h << 29) | (h >> 35);
		s += 8;
		n -= 8;
	}
	if (n) {
		uint64_t w = 0;
		memcpy(&w, s, n);
		h = (h ^ hash_mix(w ^ 0xa5)) * HASH_K;
	}
	return hash_mix(h);
}

static inline uint64_t hash_combine(uint64_t h, uint64_t v)
{
	return hash_mix(h ^ (v + HASH_K + (h << 6) + (h >> 2)));
}

/* --------------------------------------------------------------- JSON reader */

enum jtype { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ };

/* A value of the parse tree. Strings and numbers point into the body when
 * they need no unescaping, else into scratch. */
struct jv {
	uint8_t type;
	uint32_t n;			/* bytes (string, number), elements, members */
	union {
		const char *s;
		struct jv *a;
		struct jm *o;
	} u;
};

/* An object member; members are sorted by key, duplicates keep the last.
 * kpre is the key's first eight bytes, big-endian, zero-padded: most key
 * comparisons end with it. */
struct jm {
	uint64_t kpre;
	const char *key;
	uint32_t klen;
	struct jv v;
};

struct jreader {
	struct diff_result *r;
	const char *base;		/* offsets in spans are from here */
	const char *p, *end;
	unsigned depth;
};

/*
 * Containers keep their byte span in the document, in a header just before
 * their children, so a comparison can find the one value whose bytes
 * differ without a second full parse (see json_confined()).
 */
struct jspan {
	uint32_t start, end;		/* [start, end): '{' .. '}' inclusive */
	uint64_t pad;			/* children stay 16-byte aligned */
};

static inline const struct jspan *jv_span(const struct jv *v)
{
	return (const struct jspan *)(const void *)v->u.s - 1;
}

static void *jr_children(struct jreader *J, const char *open, size_t bytes)
{
	struct jspan *h = arena_alloc(&J->r->scratch, sizeof(*h) + bytes);
	h->start = (uint32_t)(open - J->base);
	h->end = (uint32_t)(J->p - J->base);
	return h + 1;
}

/* Bytes that end a run of plain string content. */
static const uint8_t str_stop[256] = {
	[0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1,
};

static const uint8_t ws_ch[256] = { [' '] = 1, ['\n'] = 1, ['\r'] = 1, ['\t'] = 1 };

static inline void jr_ws(struct jreader *J)
{
	const char *p = J->p, *end = J->end;

	if (likely(p < end && !ws_ch[(uint8_t)*p]))
		return;		/* compact JSON */
	while (p < end) {
		uint64_t w;
		/* indentation: eight spaces at a time */
		if (end - p >= 8 && (memcpy(&w, p, 8), w == 0x2020202020202020ULL)) {
			p += 8;
			continue;
		}
		if (!ws_ch[(uint8_t)*p])
			break;
		p++;
	}
	J->p = p;
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

static bool hex4(const char *p, uint32_t *out)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval(p[i]);
		if (h < 0)
			return false;
		v = v << 4 | (uint32_t)h;
	}
	*out = v;
	return true;
}

static char *utf8_put(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		*o++ = (char)cp;
	} else if (cp < 0x800) {
		*o++ = (char)(0xc0 | cp >> 6);
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*o++ = (char)(0xe0 | cp >> 12);
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*o++ = (char)(0xf0 | cp >> 18);
		*o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	}
	return o;
}

/* Decode escapes in [p, q); q is the closing quote. A lone surrogate is
 * kept as its three-byte form rather than failing the whole document. */
static bool jr_unescape(const char *p, const char *q, char *o, uint32_t *len)
{
	char *start = o;

	while (p < q) {
		if (*p != '\\') {
			*o++ = *p++;
			continue;
		}
		p++;
		if (p >= q)
			return false;
		char e = *p++;
		switch (e) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '/': *o++ = '/'; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u': {
			uint32_t cp, lo;
			if (q - p < 4 || !hex4(p, &cp))
				return false;
			p += 4;
			if (cp >= 0xd800 && cp < 0xdc00 && q - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
			    hex4(p + 2, &lo) && lo >= 0xdc00 && lo < 0xe000) {
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				p += 6;
			}
			o = utf8_put(o, cp);
			break;
		}
		default:
			return false;
		}
	}
	*len = (uint32_t)(o - start);
	return true;
}

/*
 * Eight bytes at a time (little-endian): flag '"', '\\' and control bytes.
 * Bytes above the first real one may be flagged falsely (borrows), never
 * below it.
 */
#define ONES	0x0101010101010101ULL
#define HIGHS	0x8080808080808080ULL

static inline uint64_t word_stops(uint64_t x)
{
	uint64_t q = x ^ (ONES * '"'), b = x ^ (ONES * '\\');
	return (((q - ONES) & ~q) | ((b - ONES) & ~b) | ((x - ONES * 0x20) & ~x)) & HIGHS;
}

static const char *str_scan(const char *p, const char *end)
{
	while (end - p >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		uint64_t m = word_stops(w);
		/* The lowest flagged byte is exact: borrows only run upward. */
		if (m)
			return p + (__builtin_ctzll(m) >> 3);
		p += 8;
	}
	while (p < end && !str_stop[(uint8_t)*p])
		p++;
	return p;
}

/* The value parsed, or type J_BAD. Values come back in registers: parsing
 * into memory and copying the struct out stalled on store forwarding. */
#define J_BAD 0xff

static inline struct jv jv_bad(void)
{
	return (struct jv){ .type = J_BAD };
}

static struct jv jr_string(struct jreader *J)
{
	const char *start = J->p + 1, *end = J->end;
	const char *p = str_scan(start, end);

	if (p >= end)
		return jv_bad();
	if (*p == '"') {
		J->p = p + 1;
		return (struct jv){ .type = J_STR, .n = (uint32_t)(p - start), .u.s = start };
	}
	if (*p != '\\')
		return jv_bad();	/* a raw control byte */
	/* Find the closing quote first, to size the decoded copy. */
	const char *q = p;
	while (q < end && *q != '"') {
		if ((uint8_t)*q < 0x20)
			return jv_bad();
		if (*q == '\\' && q + 1 >= end)
			return jv_bad();
		q += *q == '\\' ? 2 : 1;
	}
	if (q >= end)
		return jv_bad();
	char *d = arena_alloc(&J->r->scratch, (size_t)(q - start));
	uint32_t n;
	if (!jr_unescape(start, q, d, &n))
		return jv_bad();
	J->p = q + 1;
	return (struct jv){ .type = J_STR, .n = n, .u.s = d };
}

static inline bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static struct jv jr_number(struct jreader *J)
{
	const char *p = J->p, *end = J->end, *start = p;

	if (*p == '-')
		p++;
	if (p >= end)
		return jv_bad();
	if (*p == '0') {
		p++;
	} else if (*p >= '1' && *p <= '9') {
		while (p < end && is_digit(*p))
			p++;
	} else {
		return jv_bad();
	}
	if (p < end && *p == '.') {
		p++;
		if (p >= end || !is_digit(*p))
			return jv_bad();
		while (p < end && is_digit(*p))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || !is_digit(*p))
			return jv_bad();
		while (p < end && is_digit(*p))
			p++;
	}
	J->p = p;
	return (struct jv){ .type = J_NUM, .n = (uint32_t)(p - start), .u.s = start };
}

static struct jv jr_literal(struct jreader *J, const char *word, size_t n, enum jtype t)
{
	if ((size_t)(J->end - J->p) < n || memcmp(J->p, word, n) != 0)
		return jv_bad();
	J->p += n;
	return (struct jv){ .type = (uint8_t)t };
}

static void vstack_push(struct diff_result *r, struct jv v)
{
	if (r->vn == r->vcap) {
		r->vcap = r->vcap ? r->vcap * 2 : 256;
		r->vstack = xrealloc(r->vstack, r->vcap * sizeof(*r->vstack));
	}
	r->vstack[r->vn++] = v;
}

/* Built in a register: a short memcpy into a stack word, read back whole,
 * stalls on store forwarding. */
static inline uint64_t key_prefix(const char *k, uint32_t n)
{
	uint64_t w = 0;

	if (n >= 8) {
		memcpy(&w, k, 8);
		return __builtin_bswap64(w);
	}
	for (uint32_t i = 0; i < n; i++)
		w |= (uint64_t)(uint8_t)k[i] << (56 - 8 * i);
	return w;
}

static void mstack_push(struct diff_result *r, const char *key, uint32_t klen, struct jv v)
{
	if (r->mn == r->mcap) {
		r->mcap = r->mcap ? r->mcap * 2 : 128;
		r->mstack = xrealloc(r->mstack, r->mcap * sizeof(*r->mstack));
	}
	struct jm *m = &r->mstack[r->mn++];
	m->kpre = key_prefix(key, klen);
	m->key = key;
	m->klen = klen;
	m->v = v;
}

/* Keys are short: a byte loop beats a call to memcmp. */
static inline int key_cmp(const char *a, size_t al, const char *b, size_t bl)
{
	size_t n = MIN(al, bl);
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return (uint8_t)a[i] - (uint8_t)b[i];
	return al < bl ? -1 : al > bl;
}

static inline int jm_cmp(const struct jm *a, const struct jm *b)
{
	if (a->kpre != b->kpre)
		return a->kpre < b->kpre ? -1 : 1;
	return key_cmp(a->key, a->klen, b->key, b->klen);
}

/* Stable: duplicate keys must stay in document order so the last wins. */
static void members_sort(struct jreader *J, struct jm *m, size_t n)
{
	if (n <= 24) {
		for (size_t i = 1; i < n; i++) {
			if (jm_cmp(&m[i - 1], &m[i]) <= 0)
				continue;
			struct jm x = m[i];
			size_t j = i;
			while (j > 0 && jm_cmp(&m[j - 1], &x) > 0) {
				m[j] = m[j - 1];
				j--;
			}
			m[j] = x;
		}
		return;
	}
	size_t h = n / 2;
	members_sort(J, m, h);
	members_sort(J, m + h, n - h);
	if (jm_cmp(&m[h - 1], &m[h]) <= 0)
		return;
	struct jm *tmp = arena_alloc(&J->r->scratch, n * sizeof(*tmp));
	size_t i = 0, j = h, k = 0;
	while (i < h && j < n)
		tmp[k++] = jm_cmp(&m[j], &m[i]) < 0 ? m[j++] : m[i++];
	while (i < h)
		tmp[k++] = m[i++];
	while (j < n)
		tmp[k++] = m[j++];
	memcpy(m, tmp, n * sizeof(*tmp));
}

static size_t members_dedup(struct jm *m, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (k && jm_cmp(&m[k - 1], &m[i]) == 0)
			m[k - 1] = m[i];
		else
			m[k++] = m[i];
	}
	return k;
}

static struct jv jr_value(struct jreader *J);

/* After a member or element: ',' goes on (true), the closer ends (false,
 * *done set), anything else is an error (false). */
static inline bool jr_next(struct jreader *J, char closer, bool *done)
{
	jr_ws(J);
	if (J->p < J->end) {
		char ch = *J->p++;
		if (ch == ',')
			return true;
		*done = ch == closer;
	}
	return false;
}

static struct jv jr_array(struct jreader *J)
{
	struct diff_result *r = J->r;
	size_t base = r->vn;
	const char *open = J->p;
	bool done = false;

	J->p++;
	jr_ws(J);
	if (J->p < J->end && *J->p == ']') {
		J->p++;
		done = true;
	} else {
		do {
			struct jv e = jr_value(J);
			if (e.type == J_BAD)
				return e;
			vstack_push(r, e);
		} while (jr_next(J, ']', &done));
	}
	if (!done)
		return jv_bad();
	size_t n = r->vn - base;
	struct jv v = { .type = J_ARR, .n = (uint32_t)n };
	v.u.a = jr_children(J, open, n * sizeof(struct jv));
	if (n)
		memcpy(v.u.a, r->vstack + base, n * sizeof(struct jv));
	r->vn = base;
	return v;
}

static struct jv jr_object(struct jreader *J)
{
	struct diff_result *r = J->r;
	size_t base = r->mn;
	const char *open = J->p;
	bool done = false;

	J->p++;
	jr_ws(J);
	if (J->p < J->end && *J->p == '}') {
		J->p++;
		done = true;
	} else {
		do {
			jr_ws(J);
			if (J->p >= J->end || *J->p != '"')
				return jv_bad();
			struct jv key = jr_string(J);
			if (key.type == J_BAD)
				return key;
			jr_ws(J);
			if (J->p >= J->end || *J->p != ':')
				return jv_bad();
			J->p++;
			struct jv val = jr_value(J);
			if (val.type == J_BAD)
				return val;
			mstack_push(r, key.u.s, key.n, val);
		} while (jr_next(J, '}', &done));
	}
	if (!done)
		return jv_bad();
	size_t n = r->mn - base;
	struct jv v = { .type = J_OBJ };
	if (n) {
		members_sort(J, r->mstack + base, n);
		n = members_dedup(r->mstack + base, n);
	}
	v.u.o = jr_children(J, open, n * sizeof(struct jm));
	if (n)
		memcpy(v.u.o, r->mstack + base, n * sizeof(struct jm));
	v.n = (uint32_t)n;
	r->mn = base;
	return v;
}

static struct jv jr_value(struct jreader *J)
{
	struct jv v;

	jr_ws(J);
	if (J->p >= J->end)
		return jv_bad();
	switch (*J->p) {
	case '{':
	case '[':
		if (++J->depth > JSON_MAX_DEPTH)
			return jv_bad();
		v = *J->p == '{' ? jr_object(J) : jr_array(J);
		J->depth--;
		return v;
	case '"':
		return jr_string(J);
	case 't':
		return jr_literal(J, "true", 4, J_TRUE);
	case 'f':
		return jr_literal(J, "false", 5, J_FALSE);
	case 'n':
		return jr_literal(J, "null", 4, J_NULL);
	default:
		return jr_number(J);
	}
}

/* Parse a whole document (RFC 8259, any value at the root, a leading BOM
 * tolerated). Values larger than 4 GiB do not occur: bodies are capped. */
static bool json_parse(struct ctx *c, const uint8_t *body, size_t len, struct jv *root)
{
	if (len > UINT32_MAX || !body)
		return false;
	struct jreader J = { c->r, (const char *)body, (const char *)body, (const char *)body + len, 0 };

	c->r->vn = 0;
	c->r->mn = 0;
	if (len >= 3 && body[0] == 0xef && body[1] == 0xbb && body[2] == 0xbf)
		J.p += 3;
	*root = jr_value(&J);
	if (root->type == J_BAD)
		return false;
	jr_ws(&J);
	return J.p == J.end;
}

/* ------------------------------------------------------------ JSON numbers */

/* A number as sign, decimal exponent and significant digits: equal values
 * have equal forms, so 1, 1.0, 10e-1 and 0.1e1 compare equal, exactly and
 * at any size (no conversion to double). */
struct numform {
	bool neg, zero;
	int64_t exp;
	const char *p, *end;		/* first..last significant digit, '.' may sit inside */
};

static void num_form(const char *s, size_t n, struct numform *f)
{
	const char *e = s + n, *mend = s;

	f->neg = *s == '-';
	if (f->neg)
		s++;
	mend = s;
	while (mend < e && *mend != 'e' && *mend != 'E')
		mend++;
	int64_t x = 0;
	if (mend < e) {
		const char *q = mend + 1;
		bool xneg = false;
		if (*q == '+' || *q == '-')
			xneg = *q++ == '-';
		for (; q < e; q++)
			x = x < (int64_t)1 << 50 ? x * 10 + (*q - '0') : x;	/* saturates */
		if (xneg)
			x = -x;
	}
	const char *dot = s;
	while (dot < mend && *dot != '.')
		dot++;
	const char *first = s;
	while (first < mend && (*first == '0' || *first == '.'))
		first++;
	if (first == mend) {
		f->zero = true;
		f->neg = false;		/* -0 == 0 */
		f->exp = 0;
		f->p = f->end = NULL;
		return;
	}
	const char *last = mend - 1;
	while (*last == '0' || *last == '.')
		last--;
	f->zero = false;
	/* value = 0.d1d2... x 10^exp */
	int64_t pos = first < dot ? (int64_t)(dot - first) : -(int64_t)(first - dot - 1);
	f->exp = pos + x;
	f->p = first;
	f->end = last + 1;
}

static bool num_equal(const char *a, size_t al, const char *b, size_t bl)
{
	struct numform x, y;

	if (al == bl && memcmp(a, b, al) == 0)
		return true;
	num_form(a, al, &x);
	num_form(b, bl, &y);
	if (x.zero || y.zero)
		return x.zero == y.zero;
	if (x.neg != y.neg || x.exp != y.exp)
		return false;
	const char *p = x.p, *q = y.p;
	for (;;) {
		if (p < x.end && *p == '.')
			p++;
		if (q < y.end && *q == '.')
			q++;
		if (p == x.end || q == y.end)
			return p == x.end && q == y.end;
		if (*p++ != *q++)
			return false;
	}
}

static uint64_t num_hash(const char *s, size_t n)
{
	struct numform f;
	uint64_t h = 0x6e756d;

	num_form(s, n, &f);
	if (f.zero)
		return hash_mix(h);
	h = hash_combine(h, (uint64_t)f.exp * 2 + f.neg);
	for (const char *p = f.p; p < f.end; p++)
		if (*p != '.')
			h = h * 31 + (uint64_t)(*p - '0');
	return hash_mix(h);
}

/* ----------------------------------------------------------- JSON pointers */

/* Split the ignore_json patterns into unescaped segments. A pattern that is
 * not a pointer ("" or "/...") never matches; config validates them. */
static void ignore_prepare(struct ctx *c)
{
	const struct diff_options *o = c->opt;
	struct arena *a = &c->r->scratch;

	c->npats = 0;
	c->alive = NULL;
	if (!o->nignore_json)
		return;
	c->pats = arena_alloc(a, o->nignore_json * sizeof(*c->pats));
	for (size_t i = 0; i < o->nignore_json; i++) {
		const char *p = o->ignore_json[i];
		if (!p || (*p && *p != '/'))
			continue;
		size_t nseg = 0;
		for (const char *q = p; *q; q++)
			nseg += *q == '/';
		struct ign_pat *pat = &c->pats[c->npats++];
		pat->nseg = nseg;
		pat->seg = arena_alloc(a, (nseg + 1) * sizeof(*pat->seg));
		pat->seglen = arena_alloc(a, (nseg + 1) * sizeof(*pat->seglen));
		const char *q = p;
		for (size_t s = 0; s < nseg; s++) {
			q++;
			size_t len = strcspn(q, "/");
			char *d = arena_alloc(a, len + 1), *od = d;
			for (size_t k = 0; k < len; k++) {
				if (q[k] == '~' && k + 1 < len && (q[k + 1] == '0' || q[k + 1] == '1')) {
					*od++ = q[k + 1] == '0' ? '~' : '/';
					k++;
				} else {
					*od++ = q[k];
				}
			}
			*od = '\0';
			pat->seg[s] = d;
			pat->seglen[s] = (size_t)(od - d);
			q += len;
		}
	}
	if (!c->npats)
		return;
	c->nwords = (c->npats + 63) / 64;
	c->alive = arena_alloc(a, (JSON_MAX_DEPTH + 2) * c->nwords * sizeof(uint64_t));
	memset(c->alive, 0, c->nwords * sizeof(uint64_t));
	for (size_t i = 0; i < c->npats; i++)
		c->alive[i / 64] |= 1ULL << (i % 64);
}

/* Is the whole body ignored (a pattern "")? */
static bool ignore_root(const struct ctx *c)
{
	for (size_t i = 0; i < c->npats; i++)
		if (c->pats[i].nseg == 0)
			return true;
	return false;
}

/*
 * Step from a value at `depth` (alive patterns `alive`, NULL when none) to
 * its child named by c->frames[depth]. Returns true when the child is
 * ignored; else *child gets the child's alive set (NULL when none).
 */
static bool ignore_step(struct ctx *c, const uint64_t *alive, unsigned depth, const uint64_t **child)
{
	const struct frame *f = &c->frames[depth];
	char ibuf[24];
	const char *k = f->key;
	size_t klen = f->klen;
	bool any = false;

	*child = NULL;
	if (!alive)
		return false;
	if (f->is_index) {
		klen = (size_t)snprintf(ibuf, sizeof(ibuf), "%zu", f->index);
		k = ibuf;
	}
	uint64_t *out = c->alive + (size_t)(depth + 1) * c->nwords;
	for (size_t w = 0; w < c->nwords; w++) {
		uint64_t bits = alive[w], keep = 0;
		while (bits) {
			size_t b = (size_t)__builtin_ctzll(bits);
			bits &= bits - 1;
			const struct ign_pat *p = &c->pats[w * 64 + b];
			if (p->nseg <= depth)
				continue;
			bool match = (p->seglen[depth] == 1 && p->seg[depth][0] == '*') ||
				     (p->seglen[depth] == klen && memcmp(p->seg[depth], k, klen) == 0);
			if (!match)
				continue;
			if (p->nseg == depth + 1)
				return true;
			keep |= 1ULL << b;
		}
		out[w] = keep;
		any |= keep != 0;
	}
	*child = any ? out : NULL;
	return false;
}

/* The pointer (or place, indexes as '*') of the value at `depth`. */
static const char *pointer_build(struct ctx *c, unsigned depth, bool place, size_t *outlen)
{
	size_t len = 0;
	for (unsigned i = 0; i < depth; i++) {
		const struct frame *f = &c->frames[i];
		if (f->is_index) {
			len += 1 + (place ? 1 : 20);
			continue;
		}
		len += 1 + f->klen;
		for (size_t k = 0; k < f->klen; k++)
			len += f->key[k] == '~' || f->key[k] == '/';
	}
	char *out = arena_alloc(&c->r->keep, len + 1), *o = out;
	for (unsigned i = 0; i < depth; i++) {
		const struct frame *f = &c->frames[i];
		*o++ = '/';
		if (f->is_index) {
			if (place)
				*o++ = '*';
			else
				o += sprintf(o, "%zu", f->index);
			continue;
		}
		for (size_t k = 0; k < f->klen; k++) {
			char ch = f->key[k];
			if (ch == '~' || ch == '/') {
				*o++ = '~';
				*o++ = ch == '~' ? '0' : '1';
			} else {
				*o++ = ch;
			}
		}
	}
	*o = '\0';
	if (outlen)
		*outlen = (size_t)(o - out);
	return out;
}

/* ------------------------------------------------------- JSON serialization */

static void json_put_string(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	buf_putc(b, '"');
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t ch = (uint8_t)s[i];
		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		buf_put(b, s + run, i - run);
		run = i + 1;
		char e[6] = { '\\', 0 };
		size_t el = 2;
		switch (ch) {
		case '"': e[1] = '"'; break;
		case '\\': e[1] = '\\'; break;
		case '\b': e[1] = 'b'; break;
		case '\f': e[1] = 'f'; break;
		case '\n': e[1] = 'n'; break;
		case '\r': e[1] = 'r'; break;
		case '\t': e[1] = 't'; break;
		default:
			e[1] = 'u';
			e[2] = '0';
			e[3] = '0';
			e[4] = hex[ch >> 4];
			e[5] = hex[ch & 15];
			el = 6;
		}
		buf_put(b, e, el);
	}
	buf_put(b, s + run, n - run);
	buf_putc(b, '"');
}

/* Compact, keys sorted (they already are), numbers as the document wrote them. */
static void json_dump(struct buf *b, const struct jv *v)
{
	switch (v->type) {
	case J_NULL:
		buf_put(b, "null", 4);
		return;
	case J_TRUE:
		buf_put(b, "true", 4);
		return;
	case J_FALSE:
		buf_put(b, "false", 5);
		return;
	case J_NUM:
		buf_put(b, v->u.s, v->n);
		return;
	case J_STR:
		json_put_string(b, v->u.s, v->n);
		return;
	case J_ARR:
		buf_putc(b, '[');
		for (uint32_t i = 0; i < v->n; i++) {
			if (i)
				buf_putc(b, ',');
			json_dump(b, &v->u.a[i]);
		}
		buf_putc(b, ']');
		return;
	case J_OBJ:
		buf_putc(b, '{');
		for (uint32_t i = 0; i < v->n; i++) {
			if (i)
				buf_putc(b, ',');
			json_put_string(b, v->u.o[i].key, v->u.o[i].klen);
			buf_putc(b, ':');
			json_dump(b, &v->u.o[i].v);
		}
		buf_putc(b, '}');
		return;
	}
}

static const char *json_text(struct ctx *c, const struct jv *v, size_t *len)
{
	struct buf *b = &c->r->text;

	b->len = 0;
	json_dump(b, v);
	*len = b->len;
	return arena_dup(&c->r->keep, b->p, b->len);
}

static void json_item(struct ctx *c, unsigned depth, enum diff_change ch, const struct jv *m,
		      const struct jv *s)
{
	struct diff_item *it = item_new(c, DIFF_BODY, ch);
	if (!it)
		return;
	it->where_type = WHERE_TEXT;
	it->where = pointer_build(c, depth, false, &it->where_len);
	it->place = pointer_build(c, depth, true, NULL);
	if (m)
		it->master = json_text(c, m, &it->master_len);
	if (s)
		it->shadow = json_text(c, s, &it->shadow_len);
}

/* ------------------------------------------------------------ Myers, bounded */

/* [x0, x1) of A replaced by [y0, y1) of B; x0 == x1 inserts, y0 == y1 deletes. */
struct hunk {
	uint32_t x0, x1, y0, y1;
};

struct myers {
	const uint64_t *a, *b;
	int32_t n, m;
	int32_t **trace;		/* V after each d: trace[d][(k + d) / 2] */
};

/* Which move reaches diagonal k at step d: from k+1 (down, an insertion)
 * or from k-1 (right, a deletion), whichever goes further while staying
 * inside the grid. Forward pass and backtrack share it. */
static int32_t myers_pick(const struct myers *M, const int32_t *prev, int32_t d, int32_t k, bool *down)
{
	int32_t xd = -1, xr = -1;

	if (k + 1 <= d - 1) {
		int32_t x = prev[(k + 1 + d - 1) / 2];
		if (x >= 0 && x - k <= M->m)
			xd = x;
	}
	if (k - 1 >= -(d - 1)) {
		int32_t x = prev[(k - 1 + d - 1) / 2];
		if (x >= 0 && x + 1 <= M->n)
			xr = x + 1;
	}
	*down = xd >= xr;
	return *down ? xd : xr;
}

/*
 * Shortest edit script between a[0..n) and b[0..m), at most dmax edits and
 * about work_max steps. Returns the hunks in order, or false past a bound.
 */
static bool myers_diff(struct ctx *c, const uint64_t *a, uint32_t n, const uint64_t *b, uint32_t m,
		       int32_t dmax, uint64_t work_max, struct hunk **out, size_t *nout)
{
	struct arena *sa = &c->r->scratch;
	struct myers M = { a, b, (int32_t)n, (int32_t)m, NULL };
	uint64_t work = 0;
	int32_t dfound = -1;

	if (n > INT32_MAX / 2 || m > INT32_MAX / 2)
		return false;
	M.trace = arena_alloc(sa, (size_t)(dmax + 1) * sizeof(*M.trace));
	for (int32_t d = 0; d <= dmax && dfound < 0; d++) {
		int32_t *cur = arena_alloc(sa, (size_t)(d + 1) * sizeof(int32_t));
		const int32_t *prev = d ? M.trace[d - 1] : NULL;
		for (int32_t k = -d; k <= d; k += 2) {
			int32_t x;
			bool down;
			if (d == 0)
				x = 0;
			else
				x = myers_pick(&M, prev, d, k, &down);
			if (x < 0) {
				cur[(k + d) / 2] = -1;
				continue;
			}
			int32_t y = x - k, x0 = x;
			while (x < M.n && y < M.m && a[x] == b[y]) {
				x++;
				y++;
			}
			work += (uint64_t)(x - x0) + 1;
			cur[(k + d) / 2] = x;
			if (x == M.n && y == M.m) {
				dfound = d;
				break;
			}
		}
		M.trace[d] = cur;
		if (work > work_max)
			return false;
	}
	if (dfound < 0)
		return false;

	/* Backtrack, collecting one edit per step, last first. */
	struct hunk *e = arena_alloc(sa, ((size_t)dfound + 1) * sizeof(*e));
	int32_t x = M.n, y = M.m;
	for (int32_t d = dfound; d > 0; d--) {
		int32_t k = x - y;
		bool down;
		int32_t px = myers_pick(&M, M.trace[d - 1], d, k, &down);
		/* The step lands at (px, px - k) after the move; the snake goes on. */
		if (down) {
			int32_t sx = px, sy = px - (k + 1);
			e[d - 1] = (struct hunk){ (uint32_t)sx, (uint32_t)sx, (uint32_t)sy, (uint32_t)sy + 1 };
			x = sx;
			y = sy;
		} else {
			int32_t sx = px - 1, sy = px - 1 - (k - 1);
			e[d - 1] = (struct hunk){ (uint32_t)sx, (uint32_t)sx + 1, (uint32_t)sy, (uint32_t)sy };
			x = sx;
			y = sy;
		}
	}
	/* Merge edits that touch into hunks. */
	size_t nh = 0;
	for (int32_t i = 0; i < dfound; i++) {
		if (nh && e[nh - 1].x1 == e[i].x0 && e[nh - 1].y1 == e[i].y0) {
			e[nh - 1].x1 = e[i].x1;
			e[nh - 1].y1 = e[i].y1;
		} else {
			e[nh++] = e[i];
		}
	}
	*out = e;
	*nout = nh;
	return true;
}

/* ---------------------------------------------------------------- JSON walk */

static void json_walk(struct ctx *c, const struct jv *m, const struct jv *s, unsigned depth,
		      const uint64_t *alive);

static int jclass(const struct jv *v)
{
	return v->type == J_TRUE ? J_FALSE : v->type;
}

/* A hash of the value as compared: ignored places left out. */
static uint64_t json_hash(struct ctx *c, const struct jv *v, unsigned depth, const uint64_t *alive)
{
	uint64_t h = 0x1234 + v->type;
	const uint64_t *ca;

	switch (v->type) {
	case J_NUM:
		return num_hash(v->u.s, v->n);
	case J_STR:
		return hash_bytes(v->u.s, v->n, 0x737472);
	case J_ARR:
		for (uint32_t i = 0; i < v->n; i++) {
			c->frames[depth] = (struct frame){ NULL, 0, i, true };
			if (ignore_step(c, alive, depth, &ca))
				continue;
			h = hash_combine(h, json_hash(c, &v->u.a[i], depth + 1, ca));
		}
		return h;
	case J_OBJ:
		for (uint32_t i = 0; i < v->n; i++) {
			const struct jm *x = &v->u.o[i];
			c->frames[depth] = (struct frame){ x->key, x->klen, 0, false };
			if (ignore_step(c, alive, depth, &ca))
				continue;
			h = hash_combine(h, hash_bytes(x->key, x->klen, 1));
			h = hash_combine(h, json_hash(c, &x->v, depth + 1, ca));
		}
		return h;
	default:
		return hash_mix(h);
	}
}

/* Compare, remove or add element pair (i of master, j of shadow) named by
 * index `name`; mi/si out of range mean absent. */
static void array_step(struct ctx *c, const struct jv *m, const struct jv *s, size_t mi, size_t si,
		       size_t name, unsigned depth, const uint64_t *alive)
{
	const uint64_t *ca;

	c->frames[depth] = (struct frame){ NULL, 0, name, true };
	if (ignore_step(c, alive, depth, &ca))
		return;
	const struct jv *a = mi < m->n ? &m->u.a[mi] : NULL;
	const struct jv *b = si < s->n ? &s->u.a[si] : NULL;
	if (a && b)
		json_walk(c, a, b, depth + 1, ca);
	else if (a)
		json_item(c, depth + 1, CHANGE_REMOVED, a, NULL);
	else if (b)
		json_item(c, depth + 1, CHANGE_ADDED, NULL, b);
}

static bool array_aligned(struct ctx *c, const struct jv *m, const struct jv *s, unsigned depth,
			  const uint64_t *alive)
{
	struct arena *sa = &c->r->scratch;
	struct hunk *h;
	size_t nh;

	if (m->n > ARRAY_LEN_MAX || s->n > ARRAY_LEN_MAX)
		return false;
	uint64_t *ka = arena_alloc(sa, (m->n + 1) * sizeof(uint64_t));
	uint64_t *kb = arena_alloc(sa, (s->n + 1) * sizeof(uint64_t));
	const uint64_t *ca;
	/* Hash elements under their own index's ignore state. */
	for (uint32_t i = 0; i < m->n; i++) {
		c->frames[depth] = (struct frame){ NULL, 0, i, true };
		ka[i] = ignore_step(c, alive, depth, &ca) ? 0 : json_hash(c, &m->u.a[i], depth + 1, ca);
	}
	for (uint32_t i = 0; i < s->n; i++) {
		c->frames[depth] = (struct frame){ NULL, 0, i, true };
		kb[i] = ignore_step(c, alive, depth, &ca) ? 0 : json_hash(c, &s->u.a[i], depth + 1, ca);
	}
	if (!myers_diff(c, ka, m->n, kb, s->n, ARRAY_DMAX, ARRAY_WORK_MAX, &h, &nh))
		return false;

	/* Matched pairs are walked too: a hash says where to align, the walk
	 * says what differs. Inside a hunk, pair what can be paired. */
	size_t x = 0, y = 0;
	for (size_t k = 0; k <= nh && !c->full; k++) {
		size_t hx = k < nh ? h[k].x0 : m->n;
		for (; x < hx && !c->full; x++, y++)
			array_step(c, m, s, x, y, x, depth, alive);
		if (k == nh)
			break;
		size_t dn = h[k].x1 - h[k].x0, in = h[k].y1 - h[k].y0, pair = MIN(dn, in);
		for (size_t t = 0; t < pair && !c->full; t++)
			array_step(c, m, s, h[k].x0 + t, h[k].y0 + t, h[k].x0 + t, depth, alive);
		for (size_t t = pair; t < dn && !c->full; t++)
			array_step(c, m, s, h[k].x0 + t, SIZE_MAX, h[k].x0 + t, depth, alive);
		for (size_t t = pair; t < in && !c->full; t++)
			array_step(c, m, s, SIZE_MAX, h[k].y0 + t, h[k].y0 + t, depth, alive);
		x = h[k].x1;
		y = h[k].y1;
	}
	return true;
}

static void array_walk(struct ctx *c, const struct jv *m, const struct jv *s, unsigned depth,
		       const uint64_t *alive)
{
	if (m->n != s->n && array_aligned(c, m, s, depth, alive))
		return;
	size_t n = MAX(m->n, s->n);
	for (size_t i = 0; i < n && !c->full; i++)
		array_step(c, m, s, i, i, i, depth, alive);
}

static void object_walk(struct ctx *c, const struct jv *m, const struct jv *s, unsigned depth,
			const uint64_t *alive)
{
	const struct jm *mo = m->u.o, *so = s->u.o;
	uint32_t i = 0, j = 0;

	while ((i < m->n || j < s->n) && !c->full) {
		int d = i == m->n ? 1 : j == s->n ? -1 : jm_cmp(&mo[i], &so[j]);
		const struct jm *x = d <= 0 ? &mo[i] : &so[j];
		const uint64_t *ca;
		c->frames[depth] = (struct frame){ x->key, x->klen, 0, false };
		if (!ignore_step(c, alive, depth, &ca)) {
			if (d < 0)
				json_item(c, depth + 1, CHANGE_REMOVED, &x->v, NULL);
			else if (d > 0)
				json_item(c, depth + 1, CHANGE_ADDED, NULL, &x->v);
			else
				json_walk(c, &mo[i].v, &so[j].v, depth + 1, ca);
		}
		i += d <= 0;
		j += d >= 0;
	}
}

static void json_walk(struct ctx *c, const struct jv *m, const struct jv *s, unsigned depth,
		      const uint64_t *alive)
{
	if (c->full)
		return;
	if (jclass(m) != jclass(s)) {
		json_item(c, depth, CHANGE_TYPE, m, s);
		return;
	}
	switch (m->type) {
	case J_NULL:
		return;
	case J_TRUE:
	case J_FALSE:
		if (m->type != s->type)
			json_item(c, depth, CHANGE_VALUE, m, s);
		return;
	case J_NUM:
		if (!num_equal(m->u.s, m->n, s->u.s, s->n))
			json_item(c, depth, CHANGE_VALUE, m, s);
		return;
	case J_STR:
		if (m->n != s->n || memcmp(m->u.s, s->u.s, m->n) != 0)
			json_item(c, depth, CHANGE_VALUE, m, s);
		return;
	case J_ARR:
		array_walk(c, m, s, depth, alive);
		return;
	case J_OBJ:
		object_walk(c, m, s, depth, alive);
		return;
	}
}

/* ------------------------------------------------- JSON, confined to a value */

static bool is_container(const struct jv *v)
{
	return v->type == J_ARR || v->type == J_OBJ;
}

/* Opens inside the common prefix and closes inside the common suffix:
 * every differing byte of master, [p, e), lies strictly inside. */
static bool span_encloses(const struct jv *v, size_t p, size_t e)
{
	const struct jspan *sp = jv_span(v);
	return sp->start < p && sp->end > e;
}

/*
 * The common case, a few bytes changed inside one value, without parsing
 * the whole shadow. Bytes before p are equal on both sides and so are the
 * last q. Let X be the innermost container of master whose '{' or '['
 * comes before p and whose closer falls in the common suffix. The shadow
 * document is then master's with X's bytes replaced by the shadow's bytes
 * at the same start; if those parse as one value, the shadow is valid JSON
 * and equal to master everywhere but there. So parsing that span and
 * walking X against it gives exactly the items of a full comparison.
 *
 * Returns false when it does not apply (the caller parses the shadow).
 */
static bool json_confined(struct ctx *c, const struct jv *root, const uint8_t *m, size_t ml,
			  const uint8_t *s, size_t sl)
{
	size_t common = MIN(ml, sl), p, q;
	const uint64_t *alive = c->alive, *ca;
	const struct jv *x = root;
	unsigned depth = 0;
	bool ignored = ignore_root(c);

	p = common_prefix(m, s, common);
	q = common_suffix(m, ml, s, sl, common - p);
	size_t e = ml - q;
	if (!is_container(root) || !span_encloses(root, p, e))
		return false;
	for (;;) {
		const struct jv *next = NULL;
		if (x->type == J_ARR) {
			for (uint32_t i = 0; i < x->n && !next; i++) {
				if (is_container(&x->u.a[i]) && span_encloses(&x->u.a[i], p, e)) {
					next = &x->u.a[i];
					c->frames[depth] = (struct frame){ NULL, 0, i, true };
				}
			}
		} else {
			for (uint32_t i = 0; i < x->n && !next; i++) {
				const struct jm *mm = &x->u.o[i];
				if (is_container(&mm->v) && span_encloses(&mm->v, p, e)) {
					next = &mm->v;
					c->frames[depth] = (struct frame){ mm->key, mm->klen, 0, false };
				}
			}
		}
		if (!next)
			break;
		if (!ignored)
			ignored = ignore_step(c, alive, depth, &ca);
		alive = ca;
		x = next;
		depth++;
	}
	/* The shadow's value at X: same start, end moved by the length change. */
	const struct jspan *sp = jv_span(x);
	size_t send = sp->end + sl - ml;
	struct jreader J = { c->r, (const char *)s, (const char *)s + sp->start, (const char *)s + send, depth };
	c->r->vn = 0;
	c->r->mn = 0;
	struct jv y = jr_value(&J);
	if (y.type == J_BAD || J.p != J.end)
		return false;
	if (!ignored)
		json_walk(c, x, &y, depth, alive);
	return true;
}

/* ------------------------------------------------------------- byte bodies */

/* Token bytes: letters, digits and +/=._:- */
static const uint8_t tok_ch[256] = {
	['A' ... 'Z'] = 1, ['a' ... 'z'] = 1, ['0' ... '9'] = 1,
	['+'] = 1, ['/'] = 1, ['='] = 1, ['.'] = 1, ['_'] = 1, [':'] = 1, ['-'] = 1,
};

static inline bool tok_boundary(const uint8_t *b, size_t len, size_t i)
{
	return i == 0 || i >= len || !tok_ch[b[i - 1]] || !tok_ch[b[i]];
}

/* Tokens of b[from, to): starts in *off (one past: to), hashes in *key. */
static uint32_t tokenize(struct ctx *c, const uint8_t *b, size_t from, size_t to, uint32_t **off,
			 uint64_t **key)
{
	uint32_t n = 0;

	for (size_t i = from; i < to; n++) {
		if (tok_ch[b[i]])
			while (++i < to && tok_ch[b[i]])
				;
		else
			i++;
	}
	*off = arena_alloc(&c->r->scratch, ((size_t)n + 1) * sizeof(uint32_t));
	*key = arena_alloc(&c->r->scratch, ((size_t)n + 1) * sizeof(uint64_t));
	n = 0;
	for (size_t i = from; i < to; n++) {
		size_t st = i;
		if (tok_ch[b[i]]) {
			while (++i < to && tok_ch[b[i]])
				;
			(*key)[n] = hash_bytes(b + st, i - st, 0x746f6b);
		} else {
			i++;
			(*key)[n] = 0x5eb0000000000000ULL | b[st];
		}
		(*off)[n] = (uint32_t)st;
	}
	(*off)[n] = (uint32_t)to;
	return n;
}

struct ranges {
	struct diff_range *r;
	size_t n, cap;
};

static void ranges_add(struct ctx *c, struct ranges *rs, uint64_t ms, uint64_t me, uint64_t ss, uint64_t se)
{
	if (rs->n && rs->r[rs->n - 1].end == ms && rs->r[rs->n - 1].shadow_end == ss) {
		rs->r[rs->n - 1].end = me;
		rs->r[rs->n - 1].shadow_end = se;
		return;
	}
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 16;
		struct diff_range *nr = arena_alloc(&c->r->scratch, cap * sizeof(*nr));
		if (rs->n)
			memcpy(nr, rs->r, rs->n * sizeof(*nr));
		rs->r = nr;
		rs->cap = cap;
	}
	rs->r[rs->n++] = (struct diff_range){ ms, me, ss, se, false };
}

/*
 * The token-aligned ranges where the middles m[p, me) and s[p, se) differ.
 * False when the bodies are too large or too different to align.
 */
static bool token_ranges(struct ctx *c, const uint8_t *m, size_t p, size_t me, const uint8_t *s,
			 size_t se, struct ranges *rs)
{
	uint32_t *mo, *so;
	uint64_t *mk, *sk;
	struct hunk *h;
	size_t nh;

	if (me - p > TOKEN_BYTES_MAX || se - p > TOKEN_BYTES_MAX)
		return false;
	uint32_t mn = tokenize(c, m, p, me, &mo, &mk);
	uint32_t sn = tokenize(c, s, p, se, &so, &sk);
	if (!myers_diff(c, mk, mn, sk, sn, TOKEN_DMAX, TOKEN_WORK_MAX, &h, &nh))
		return false;
	uint32_t x = 0, y = 0;
	for (size_t k = 0; k <= nh; k++) {
		uint32_t hx = k < nh ? h[k].x0 : mn, hy = k < nh ? h[k].y0 : sn;
		/* Tokens matched by hash are checked by bytes: a collision
		 * becomes a range instead of a silent match. */
		if (hx > x) {
			size_t la = mo[hx] - mo[x], lb = so[hy] - so[y];
			if (la != lb || memcmp(m + mo[x], s + so[y], la) != 0)
				ranges_add(c, rs, mo[x], mo[hx], so[y], so[hy]);
		}
		if (k == nh)
			break;
		ranges_add(c, rs, mo[h[k].x0], mo[h[k].x1], so[h[k].y0], so[h[k].y1]);
		x = h[k].x1;
		y = h[k].y1;
	}
	return true;
}

/* A window of excerpt_max bytes around `at`, not cutting UTF-8 sequences. */
static void excerpt_take(struct ctx *c, const uint8_t *b, size_t len, size_t at, const char **out,
			 size_t *outlen)
{
	size_t w = c->excerpt_max, pre = w / 3;

	at = MIN(at, len);
	size_t start = at > pre ? at - pre : 0;
	size_t end = MIN(len, start + w);
	if (end - start < w)
		start = end > w ? end - w : 0;
	while (start < at && (b[start] & 0xc0) == 0x80)
		start++;
	while (end > at && end < len && (b[end] & 0xc0) == 0x80)
		end--;
	*out = arena_dup(&c->r->keep, b + start, end - start);
	*outlen = end - start;
}

static void item_show_range(struct diff_item *it, size_t i)
{
	const struct excerpt *ex = &item_ext_of(it)->ex[i];

	it->offset = it->ranges[i].start;
	it->master = ex->m;
	it->master_len = ex->mlen;
	it->shadow = ex->s;
	it->shadow_len = ex->slen;
}

static void compare_bytes(struct ctx *c, const uint8_t *m, size_t ml, const uint8_t *s, size_t sl)
{
	struct ranges rs = { 0 };
	size_t common = MIN(ml, sl), p, q;

	if (ml == sl && memcmp(m, s, ml) == 0)
		return;
	p = common_prefix(m, s, common);
	while (p > 0 && !(tok_boundary(m, ml, p) && tok_boundary(s, sl, p)))
		p--;
	q = common_suffix(m, ml, s, sl, common - p);
	while (q > 0 && !(tok_boundary(m, ml, ml - q) && tok_boundary(s, sl, sl - q)))
		q--;
	if (!token_ranges(c, m, p, ml - q, s, sl - q, &rs) || rs.n == 0) {
		rs.n = 0;
		ranges_add(c, &rs, p, ml - q, p, sl - q);
	}

	struct diff_item *it = item_new(c, DIFF_BODY, CHANGE_VALUE);
	if (!it)
		return;
	struct diff_range *kr = arena_alloc(&c->r->keep, rs.n * sizeof(*kr));
	struct excerpt *ex = arena_alloc(&c->r->keep, rs.n * sizeof(*ex));
	memcpy(kr, rs.r, rs.n * sizeof(*kr));
	for (size_t i = 0; i < rs.n; i++) {
		excerpt_take(c, m, ml, kr[i].start, &ex[i].m, &ex[i].mlen);
		excerpt_take(c, s, sl, kr[i].shadow_start, &ex[i].s, &ex[i].slen);
	}
	it->where_type = WHERE_OFFSET;
	it->ranges = kr;
	it->nranges = rs.n;
	it->place = "body";
	item_ext_of(it)->ex = ex;
	item_show_range(it, 0);
}

/* ------------------------------------------------------ truncated captures */

static uint64_t body_total(const struct diff_response *r)
{
	return MAX(r->body_total, (uint64_t)r->body_len);
}

static bool body_truncated(const struct diff_response *r)
{
	return r->body_total > r->body_len;
}

static uint32_t body_crc(const struct diff_response *r)
{
	if (body_truncated(r))
		return r->body_crc;
	/* The whole body is here: trust it over the capture's bookkeeping. */
	uLong crc = crc32(0, Z_NULL, 0);
	const uint8_t *p = r->body;
	size_t n = r->body_len;
	while (n) {
		uInt k = (uInt)MIN(n, (size_t)1 << 30);
		crc = crc32(crc, p, k);
		p += k;
		n -= k;
	}
	return (uint32_t)crc;
}

static const char *truncated_text(struct ctx *c, const struct diff_response *r, uint32_t crc, size_t at,
				  bool show, size_t *len)
{
	struct buf *b = &c->r->text;
	char head[160];

	int n = snprintf(head, sizeof(head), "length %llu, crc32 %08x, %zu bytes captured",
			 (unsigned long long)body_total(r), crc, r->body_len);
	b->len = 0;
	buf_put(b, head, (size_t)n);
	if (show) {
		n = snprintf(head, sizeof(head), "; from byte %zu: ", at);
		buf_put(b, head, (size_t)n);
		buf_put(b, r->body + at, MIN(c->excerpt_max, r->body_len - at));
	}
	*len = b->len;
	return arena_dup(&c->r->keep, b->p, b->len);
}

/* Compared by total length and CRC; located within the captured prefixes. */
static void compare_truncated(struct ctx *c, const struct diff_response *m, const struct diff_response *s)
{
	uint32_t mc = body_crc(m), sc = body_crc(s);
	uint64_t mt = body_total(m), st = body_total(s);

	if (mt == st && mc == sc)
		return;
	size_t common = MIN(m->body_len, s->body_len);
	size_t p = common ? common_prefix(m->body, s->body, common) : 0;
	struct diff_item *it = item_new(c, DIFF_BODY, CHANGE_VALUE);
	if (!it)
		return;
	struct diff_range *r = arena_alloc(&c->r->keep, sizeof(*r));
	*r = (struct diff_range){ p, mt, p, st, false };
	struct excerpt *ex = arena_alloc(&c->r->keep, sizeof(*ex));
	ex->m = truncated_text(c, m, mc, p, p < common, &ex->mlen);
	ex->s = truncated_text(c, s, sc, p, p < common, &ex->slen);
	it->where_type = WHERE_OFFSET;
	it->ranges = r;
	it->nranges = 1;
	it->place = "body";
	item_ext_of(it)->ex = ex;
	item_show_range(it, 0);
}

/* ------------------------------------------------------------------ bodies */

static void compare_bodies(struct ctx *c, const struct diff_response *m, const struct diff_response *s)
{
	const uint8_t *mb, *sb;
	size_t ml, sl;

	if (body_truncated(m) || body_truncated(s)) {
		compare_truncated(c, m, s);
		return;
	}
	body_decoded(c, m, 0, &mb, &ml);
	body_decoded(c, s, 1, &sb, &sl);
	if (ml == sl && (ml == 0 || memcmp(mb, sb, ml) == 0))
		return;
	if (response_is_json(m) && response_is_json(s)) {
		struct jv mj, sj;
		if (json_parse(c, mb, ml, &mj)) {
			ignore_prepare(c);
			if (json_confined(c, &mj, mb, ml, sb, sl))
				return;
			if (json_parse(c, sb, sl, &sj)) {
				if (!ignore_root(c))
					json_walk(c, &mj, &sj, 0, c->alive);
				return;
			}
		}
	}
	compare_bytes(c, mb ? mb : (const uint8_t *)"", ml, sb ? sb : (const uint8_t *)"", sl);
}

size_t diff_compare(const struct diff_options *opt, const struct diff_response *master,
		    const struct diff_response *shadow, struct diff_result *out)
{
	static const struct diff_options defaults;
	struct ctx *c;
	size_t before = out->n;

	arena_rewind(&out->scratch);
	c = arena_alloc(&out->scratch, sizeof(*c));
	memset(c, 0, offsetof(struct ctx, frames));
	c->pats = NULL;
	c->npats = c->nwords = 0;
	c->alive = NULL;
	c->r = out;
	c->opt = opt ? opt : &defaults;
	c->max_items = c->opt->max_items ? c->opt->max_items : DEFAULT_MAX_ITEMS;
	c->excerpt_max = c->opt->excerpt_max ? c->opt->excerpt_max : DEFAULT_EXCERPT;
	c->max_decoded = c->opt->max_decoded ? c->opt->max_decoded : DEFAULT_MAX_DECODED;

	if (master->error || shadow->error) {
		compare_error(c, master, shadow);
	} else {
		compare_status(c, master->status, shadow->status);
		compare_headers(c, master, shadow);
		if (!c->full)
			compare_bodies(c, master, shadow);
	}
	/* A decoded body of megabytes should not stay pinned. */
	buf_release_if_big(&out->dec[0], 4u << 20);
	buf_release_if_big(&out->dec[1], 4u << 20);
	buf_release_if_big(&out->text, 1u << 20);
	return out->n - before;
}

/* ------------------------------------------------------------------- noise */

/* Is pointer anc the same as p or an ancestor of it? (Lengths, not NULs:
 * a member name may hold a NUL.) */
static bool pointer_covers(const struct diff_item *anc, const struct diff_item *p)
{
	size_t n = anc->where_len;
	return n <= p->where_len && memcmp(anc->where, p->where, n) == 0 &&
	       (n == p->where_len || p->where[n] == '/');
}

static bool range_overlaps(const struct diff_range *a, const struct diff_range *b)
{
	if (a->start == a->end || b->start == b->end)
		return a->start <= b->end && b->start <= a->end;
	return a->start < b->end && b->start < a->end;
}

/* Ranges of `it` overlapped by any range of the reference's byte items. */
static void ranges_mark_noise(struct diff_item *it, const struct diff_result *ref)
{
	struct diff_range *r = (struct diff_range *)it->ranges;

	for (size_t i = 0; i < it->nranges; i++) {
		for (size_t k = 0; k < ref->n && !r[i].noise; k++) {
			const struct diff_item *x = &ref->items[k].it;
			if (x->kind != DIFF_BODY || x->where_type != WHERE_OFFSET)
				continue;
			/* Both lists are sorted by start: stop once past. */
			for (size_t j = 0; j < x->nranges; j++) {
				if (x->ranges[j].start > r[i].end)
					break;
				if (range_overlaps(&r[i], &x->ranges[j])) {
					r[i].noise = true;
					break;
				}
			}
		}
	}
	size_t first = it->nranges;
	for (size_t i = 0; i < it->nranges && first == it->nranges; i++)
		if (!r[i].noise)
			first = i;
	if (first == it->nranges) {
		it->noise = true;
		item_show_range(it, 0);
	} else {
		item_show_range(it, first);
	}
}

static bool item_is_noise(const struct diff_item *it, const struct diff_result *ref)
{
	for (size_t k = 0; k < ref->n; k++) {
		const struct diff_item *x = &ref->items[k].it;
		if (x->kind != it->kind)
			continue;
		switch (it->kind) {
		case DIFF_STATUS:
			return true;
		case DIFF_HEADER:
			if (x->where_len == it->where_len && memcmp(x->where, it->where, it->where_len) == 0)
				return true;
			break;
		case DIFF_BODY:
			if (it->where_type == WHERE_TEXT && x->where_type == WHERE_TEXT &&
			    pointer_covers(x, it))
				return true;
			break;
		case DIFF_ERROR:
			return false;
		}
	}
	return false;
}

void diff_mark_noise(struct diff_result *shadow, const struct diff_result *reference)
{
	if (!reference)
		return;
	for (size_t i = 0; i < shadow->n; i++) {
		struct diff_item *it = &shadow->items[i].it;
		if (it->kind == DIFF_ERROR || it->noise)
			continue;
		if (it->kind == DIFF_BODY && it->where_type == WHERE_OFFSET)
			ranges_mark_noise(it, reference);
		else
			it->noise = item_is_noise(it, reference);
	}
}

void diff_mark_all_noise(struct diff_result *r)
{
	for (size_t i = 0; i < r->n; i++) {
		struct diff_item *it = &r->items[i].it;
		it->noise = true;
		for (size_t k = 0; k < it->nranges; k++)
			((struct diff_range *)it->ranges)[k].noise = true;
	}
}

bool diff_matches(const struct diff_result *r)
{
	for (size_t i = 0; i < r->n; i++)
		if (!r->items[i].it.noise)
			return false;
	return true;
}

size_t diff_place(const struct diff_item *it, char *out, size_t cap)
{
	const char *p = it->place ? it->place : "";
	size_t n = strlen(p);

	if (!cap)
		return 0;
	if (n > cap - 1) {
		/* Cut before a UTF-8 sequence or a ~0/~1 escape that would not
		 * fit whole: a cut place is still a valid pointer and valid text. */
		n = cap - 1;
		while (n && ((unsigned char)p[n] & 0xC0) == 0x80)
			n--;
		if (n && p[n - 1] == '~')
			n--;
	}
	memcpy(out, p, n);
	out[n] = '\0';
	return n;
}
