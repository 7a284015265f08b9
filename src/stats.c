/*
 * stats: per endpoint, backend and place counters and Diffy's rule (see
 * stats.h). Endpoints live in an open-addressing table; places in a short
 * array per endpoint and backend (at most max_places plus one "(other)"
 * per kind), scanned by hash: a record has few items and an endpoint few
 * places.
 */
#include "stats.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define DEFAULT_MAX_ENDPOINTS	256
#define DEFAULT_MAX_PLACES	64
#define PLACE_MAX		256	/* bytes of a place, NUL included */
#define OTHER_ENDPOINT		"other"
#define OTHER_PLACE		"(other)"
#define NKINDS			4

struct place {
	uint64_t hash;
	char *where;
	enum diff_kind kind;
	uint64_t n_s, n_r;
	uint64_t seq_s, seq_r;		/* last record counted: once per record */
};

struct ep_backend {
	struct stats_counts counts;
	struct histogram *lat;
	struct place *places;
	size_t nplaces;
};

struct endpoint {
	char *name;
	uint64_t hash;
	uint64_t requests;
	uint64_t mismatches;		/* all shadows but the reference: for sorting */
	struct ep_backend *b;
};

struct stats {
	char **names;
	size_t nb;
	int reference;
	double rel, abs;
	size_t max_endpoints, max_places;
	struct endpoint *eps;
	size_t neps, epcap;
	uint32_t *slots;		/* endpoint index + 1; 0 = empty */
	size_t nslots;
	long other;			/* index of "other", or -1 */
	uint64_t records, seq;
	struct histogram **total_lat;	/* per backend */
	struct stats_counts *total;	/* per backend */
};

static uint64_t str_hash(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)s[i];
		h *= 0x100000001b3ULL;
	}
	return h ^ (h >> 29);
}

static void die_oom(void)
{
	fputs("kage stats: out of memory\n", stderr);
	abort();
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p)
		die_oom();
	return p;
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (!p)
		die_oom();
	return p;
}

struct stats *stats_new(const struct stats_config *cfg)
{
	if (!cfg || !cfg->nbackends || !cfg->backends)
		return NULL;
	struct stats *s = xcalloc(1, sizeof(*s));
	s->nb = cfg->nbackends;
	s->names = xcalloc(s->nb, sizeof(*s->names));
	for (size_t i = 0; i < s->nb; i++) {
		const char *n = cfg->backends[i] ? cfg->backends[i] : "?";
		s->names[i] = xstrndup(n, strlen(n));
	}
	s->reference = cfg->reference > 0 && (size_t)cfg->reference < s->nb ? cfg->reference : -1;
	s->rel = cfg->noise_relative;
	s->abs = cfg->noise_absolute;
	s->max_endpoints = cfg->max_endpoints ? cfg->max_endpoints : DEFAULT_MAX_ENDPOINTS;
	s->max_places = cfg->max_places ? cfg->max_places : DEFAULT_MAX_PLACES;
	s->other = -1;
	/* Load under one half, the "other" endpoint included. */
	s->nslots = 16;
	while (s->nslots < 2 * (s->max_endpoints + 1))
		s->nslots *= 2;
	s->slots = xcalloc(s->nslots, sizeof(*s->slots));
	s->total_lat = xcalloc(s->nb, sizeof(*s->total_lat));
	s->total = xcalloc(s->nb, sizeof(*s->total));
	return s;
}

void stats_free(struct stats *s)
{
	if (!s)
		return;
	for (size_t e = 0; e < s->neps; e++) {
		struct endpoint *ep = &s->eps[e];
		for (size_t b = 0; b < s->nb; b++) {
			for (size_t p = 0; p < ep->b[b].nplaces; p++)
				free(ep->b[b].places[p].where);
			free(ep->b[b].places);
			free(ep->b[b].lat);
		}
		free(ep->b);
		free(ep->name);
	}
	for (size_t b = 0; b < s->nb; b++) {
		free(s->total_lat[b]);
		free(s->names[b]);
	}
	free(s->total_lat);
	free(s->total);
	free(s->names);
	free(s->eps);
	free(s->slots);
	free(s);
}

static size_t endpoint_create(struct stats *s, const char *name, size_t n, uint64_t h)
{
	if (s->neps == s->epcap) {
		s->epcap = s->epcap ? s->epcap * 2 : 16;
		s->eps = realloc(s->eps, s->epcap * sizeof(*s->eps));
		if (!s->eps)
			die_oom();
	}
	struct endpoint *ep = &s->eps[s->neps];
	memset(ep, 0, sizeof(*ep));
	ep->name = xstrndup(name, n);
	ep->hash = h;
	ep->b = xcalloc(s->nb, sizeof(*ep->b));
	return s->neps++;
}

static size_t endpoint_lookup(struct stats *s, const char *name)
{
	size_t n = strlen(name);
	uint64_t h = str_hash(name, n);
	size_t mask = s->nslots - 1, i = (size_t)h & mask;

	for (;; i = (i + 1) & mask) {
		uint32_t slot = s->slots[i];
		if (!slot)
			break;
		struct endpoint *ep = &s->eps[slot - 1];
		if (ep->hash == h && strcmp(ep->name, name) == 0)
			return slot - 1;
	}
	/* Room left: a new endpoint; else everything new is "other". */
	if (s->neps - (s->other >= 0) < s->max_endpoints) {
		size_t e = endpoint_create(s, name, n, h);
		s->slots[i] = (uint32_t)e + 1;
		return e;
	}
	if (s->other < 0)
		s->other = (long)endpoint_create(s, OTHER_ENDPOINT, strlen(OTHER_ENDPOINT), 0);
	return (size_t)s->other;
}

static struct place *place_find(struct ep_backend *eb, enum diff_kind kind, const char *where,
				uint64_t h)
{
	for (size_t i = 0; i < eb->nplaces; i++) {
		struct place *p = &eb->places[i];
		if (p->hash == h && p->kind == kind && strcmp(p->where, where) == 0)
			return p;
	}
	return NULL;
}

static struct place *place_get(struct stats *s, struct ep_backend *eb, const struct diff_item *it)
{
	char where[PLACE_MAX];
	size_t n = diff_place(it, where, sizeof(where));
	uint64_t h = str_hash(where, n) ^ (uint64_t)it->kind;
	struct place *p = place_find(eb, it->kind, where, h);

	if (p)
		return p;
	if (!eb->places)
		eb->places = xcalloc(s->max_places + NKINDS, sizeof(*eb->places));
	size_t named = 0;
	for (size_t i = 0; i < eb->nplaces; i++)
		named += strcmp(eb->places[i].where, OTHER_PLACE) != 0;
	if (named >= s->max_places) {
		n = strlen(OTHER_PLACE);
		memcpy(where, OTHER_PLACE, n + 1);
		h = str_hash(where, n) ^ (uint64_t)it->kind;
		p = place_find(eb, it->kind, where, h);
		if (p)
			return p;
	}
	p = &eb->places[eb->nplaces++];
	memset(p, 0, sizeof(*p));
	p->hash = h;
	p->kind = it->kind;
	p->where = xstrndup(where, n);
	return p;
}

/* Count each place of `diff` once for this record: as the backend's own
 * difference (n_s) and/or as the reference's (n_r). */
static void places_count(struct stats *s, struct ep_backend *eb, const struct diff_result *diff,
			 bool as_shadow, bool as_reference)
{
	size_t n = diff_count(diff);

	for (size_t i = 0; i < n; i++) {
		struct place *p = place_get(s, eb, diff_get(diff, i));
		if (as_shadow && p->seq_s != s->seq) {
			p->seq_s = s->seq;
			p->n_s++;
		}
		if (as_reference && p->seq_r != s->seq) {
			p->seq_r = s->seq;
			p->n_r++;
		}
	}
}

static void counts_status(struct stats_counts *c, int status)
{
	int k = status >= 100 && status < 600 ? status / 100 : 0;
	c->status_class[k]++;
}

static void latency_record(struct histogram **h, int64_t ns)
{
	if (!*h && !(*h = histogram_new()))
		die_oom();
	histogram_record(*h, ns > 0 ? (uint64_t)ns : 0);
}

void stats_add(struct stats *s, const char *endpoint, const struct stats_obs *obs)
{
	/* The lookup may grow s->eps: index first, then take the address. */
	size_t e = endpoint_lookup(s, endpoint ? endpoint : "");
	struct endpoint *ep = &s->eps[e];
	const struct stats_obs *ref = s->reference >= 0 ? &obs[s->reference] : NULL;

	s->records++;
	s->seq++;
	ep->requests++;
	for (size_t b = 0; b < s->nb; b++) {
		const struct stats_obs *o = &obs[b];
		struct ep_backend *eb = &ep->b[b];
		struct stats_counts *c[2] = { &eb->counts, &s->total[b] };
		if (!o->present)
			continue;
		bool matched = true;
		if (b != 0) {
			if (o->error)
				matched = false;
			else if (o->diff)
				matched = (int)b == s->reference ? diff_count(o->diff) == 0 : diff_matches(o->diff);
		}
		for (int k = 0; k < 2; k++) {
			c[k]->compared++;
			counts_status(c[k], o->error ? 0 : o->status);
			c[k]->errors += o->error;
			if (b != 0) {
				c[k]->matched += matched;
				c[k]->mismatched += !matched;
			}
		}
		if (b != 0 && !matched && (int)b != s->reference)
			ep->mismatches++;
		if (!o->error) {
			latency_record(&eb->lat, o->elapsed_ns);
			latency_record(&s->total_lat[b], o->elapsed_ns);
		}
		if (b == 0)
			continue;
		bool is_ref = (int)b == s->reference;
		if (o->diff)
			places_count(s, eb, o->diff, true, is_ref);
		if (!is_ref && ref && ref->present && ref->diff)
			places_count(s, eb, ref->diff, false, true);
	}
}

bool stats_reported(uint64_t n_s, uint64_t n_r, uint64_t requests, double relative, double absolute)
{
	if (!requests || n_s <= n_r)
		return false;
	return (double)n_s > (double)n_r * (1.0 + relative) &&
	       (double)(n_s - n_r) / (double)requests > absolute;
}

/* ------------------------------------------------------------------ readers */

uint64_t stats_records(const struct stats *s)
{
	return s->records;
}

size_t stats_endpoint_count(const struct stats *s)
{
	return s->neps;
}

const char *stats_endpoint_name(const struct stats *s, size_t e)
{
	return e < s->neps ? s->eps[e].name : NULL;
}

uint64_t stats_endpoint_requests(const struct stats *s, size_t e)
{
	return e < s->neps ? s->eps[e].requests : 0;
}

const struct stats_counts *stats_counts(const struct stats *s, size_t e, size_t b)
{
	return e < s->neps && b < s->nb ? &s->eps[e].b[b].counts : NULL;
}

const struct histogram *stats_latency(const struct stats *s, size_t e, size_t b)
{
	return e < s->neps && b < s->nb ? s->eps[e].b[b].lat : NULL;
}

const struct histogram *stats_backend_latency(const struct stats *s, size_t b)
{
	return b < s->nb ? s->total_lat[b] : NULL;
}

size_t stats_place_count(const struct stats *s, size_t e, size_t b)
{
	return e < s->neps && b < s->nb ? s->eps[e].b[b].nplaces : 0;
}

static void place_view(const struct stats *s, const struct ep_backend *eb, size_t b, const struct place *p,
		       struct stats_place *out)
{
	out->backend = (int)b;
	out->kind = p->kind;
	out->where = p->where;
	out->shadow_count = p->n_s;
	out->reference_count = p->n_r;
	out->requests = eb->counts.compared;
	out->reported = stats_reported(p->n_s, p->n_r, out->requests, s->rel, s->abs);
}

bool stats_place_get(const struct stats *s, size_t e, size_t b, size_t i, struct stats_place *out)
{
	if (e >= s->neps || b >= s->nb || i >= s->eps[e].b[b].nplaces)
		return false;
	place_view(s, &s->eps[e].b[b], b, &s->eps[e].b[b].places[i], out);
	return true;
}

/* --------------------------------------------------------------------- JSON */

static const char *kind_name(enum diff_kind k)
{
	switch (k) {
	case DIFF_STATUS: return "status";
	case DIFF_HEADER: return "header";
	case DIFF_BODY: return "body";
	case DIFF_ERROR: return "error";
	}
	return "?";
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if none. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t min, cp;

	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0) {
		len = 2; min = 0x80; cp = c & 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3; min = 0x800; cp = c & 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		len = 4; min = 0x10000; cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
		return 0;
	return len;
}

/* A JSON string; bytes that are not UTF-8 become U+FFFD. */
static void json_str(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str);

	fputc('"', f);
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc(c, f);
			i++;
		} else if (c < 0x20) {
			fprintf(f, "\\u%04x", c);
			i++;
		} else {
			size_t l = utf8_len(s + i, n - i);
			if (!l) {
				fputs("\\ufffd", f);
				i++;
			} else {
				fwrite(s + i, 1, l, f);
				i += l;
			}
		}
	}
	fputc('"', f);
}

static double ns_to_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static void json_latency(FILE *f, const struct histogram *h)
{
	static const double pct[] = { 50, 90, 99 };
	static const char *const names[] = { "p50", "p90", "p99" };

	fputs("\"latency_ms\":{", f);
	for (size_t i = 0; i < 3; i++) {
		fprintf(f, "%s\"%s\":", i ? "," : "", names[i]);
		if (h && h->count)
			fprintf(f, "%.3f", ns_to_ms(histogram_percentile(h, pct[i])));
		else
			fputs("null", f);
	}
	fputc('}', f);
}

static int cmp_name(const void *a, const void *b, void *arg)
{
	const struct stats *s = arg;
	return strcmp(s->eps[*(const size_t *)a].name, s->eps[*(const size_t *)b].name);
}

static int cmp_mismatch(const void *a, const void *b, void *arg)
{
	const struct stats *s = arg;
	const struct endpoint *x = &s->eps[*(const size_t *)a], *y = &s->eps[*(const size_t *)b];
	if (x->mismatches != y->mismatches)
		return x->mismatches > y->mismatches ? -1 : 1;
	if (x->requests != y->requests)
		return x->requests > y->requests ? -1 : 1;
	return strcmp(x->name, y->name);
}

static size_t *endpoints_sorted(const struct stats *s, int (*cmp)(const void *, const void *, void *))
{
	size_t *order = xcalloc(s->neps, sizeof(*order));
	for (size_t i = 0; i < s->neps; i++)
		order[i] = i;
	qsort_r(order, s->neps, sizeof(*order), cmp, (void *)s);
	return order;
}

/* Places of one endpoint, all shadows: reported first, then most frequent. */
struct place_ref {
	size_t b;
	const struct place *p;
	bool reported;
};

static int cmp_place(const void *a, const void *b)
{
	const struct place_ref *x = a, *y = b;
	if (x->reported != y->reported)
		return x->reported ? -1 : 1;
	if (x->b != y->b)
		return x->b < y->b ? -1 : 1;
	if (x->p->n_s != y->p->n_s)
		return x->p->n_s > y->p->n_s ? -1 : 1;
	if (x->p->kind != y->p->kind)
		return x->p->kind < y->p->kind ? -1 : 1;
	return strcmp(x->p->where, y->p->where);
}

static struct place_ref *places_sorted(const struct stats *s, const struct endpoint *ep, size_t *np)
{
	size_t n = 0;
	for (size_t b = 1; b < s->nb; b++)
		n += ep->b[b].nplaces;
	struct place_ref *pr = xcalloc(n, sizeof(*pr));
	n = 0;
	for (size_t b = 1; b < s->nb; b++) {
		const struct ep_backend *eb = &ep->b[b];
		for (size_t i = 0; i < eb->nplaces; i++) {
			const struct place *p = &eb->places[i];
			bool rep = stats_reported(p->n_s, p->n_r, eb->counts.compared, s->rel, s->abs);
			pr[n++] = (struct place_ref){ b, p, rep };
		}
	}
	qsort(pr, n, sizeof(*pr), cmp_place);
	*np = n;
	return pr;
}

static void json_endpoint(const struct stats *s, FILE *f, const struct endpoint *ep)
{
	fprintf(f, "{\"requests\":%" PRIu64 ",\"backends\":{", ep->requests);
	for (size_t b = 0; b < s->nb; b++) {
		const struct ep_backend *eb = &ep->b[b];
		if (b)
			fputc(',', f);
		json_str(f, s->names[b]);
		fprintf(f, ":{\"compared\":%" PRIu64 ",\"matched\":%" PRIu64 ",\"mismatched\":%" PRIu64
			   ",\"errors\":%" PRIu64 ",",
			eb->counts.compared, eb->counts.matched, eb->counts.mismatched, eb->counts.errors);
		json_latency(f, eb->lat);
		fputc('}', f);
	}
	fputs("},\"places\":[", f);
	size_t np;
	struct place_ref *pr = places_sorted(s, ep, &np);
	for (size_t i = 0; i < np; i++) {
		const struct place *p = pr[i].p;
		fputs(i ? ",{\"backend\":" : "{\"backend\":", f);
		json_str(f, s->names[pr[i].b]);
		fprintf(f, ",\"kind\":\"%s\",\"where\":", kind_name(p->kind));
		json_str(f, p->where);
		fprintf(f, ",\"shadow_count\":%" PRIu64 ",\"reference_count\":%" PRIu64
			   ",\"requests\":%" PRIu64 ",\"reported\":%s}",
			p->n_s, p->n_r, ep->b[pr[i].b].counts.compared, pr[i].reported ? "true" : "false");
	}
	free(pr);
	fputs("]}", f);
}

void stats_write_json(const struct stats *s, FILE *f)
{
	size_t *order = endpoints_sorted(s, cmp_name);

	fputc('{', f);
	for (size_t i = 0; i < s->neps; i++) {
		const struct endpoint *ep = &s->eps[order[i]];
		if (i)
			fputc(',', f);
		json_str(f, ep->name);
		fputc(':', f);
		json_endpoint(s, f, ep);
	}
	fputc('}', f);
	free(order);
}

/* -------------------------------------------------------------------- table */

#define EP_WIDTH_MAX	44
#define PLACES_SHOWN	8

struct table {
	int ep_w, be_w;
};

static void print_clipped(FILE *f, const char *str, int width)
{
	int n = (int)strlen(str);
	if (n <= width)
		fprintf(f, "%-*s", width, str);
	else
		fprintf(f, "%.*s...", width - 3, str);
}

static void print_ms(FILE *f, const struct histogram *h, double p)
{
	if (!h || !h->count) {
		fprintf(f, " %9s", "-");
		return;
	}
	double ms = ns_to_ms(histogram_percentile(h, p));
	fprintf(f, ms < 100 ? " %9.2f" : " %9.0f", ms);
}

static void print_backend_row(const struct stats *s, FILE *f, const struct table *t, size_t b,
			      const struct stats_counts *c, const struct histogram *lat)
{
	fprintf(f, "  %-*s", t->be_w, s->names[b]);
	if (b == 0 || !c->compared || (int)b == s->reference) {
		/* The reference's differences are noise by definition: its
		 * records never mismatch; how often it differed is below. */
		fprintf(f, " %8s %9s", "-", "-");
	} else {
		double rate = 100.0 * (double)c->matched / (double)c->compared;
		/* Never print 100.0% for a backend that mismatched once. */
		if (c->mismatched && rate > 99.9)
			rate = 99.9;
		fprintf(f, " %7.1f%% %9" PRIu64, rate, c->mismatched);
	}
	fprintf(f, " %7" PRIu64, c->errors);
	print_ms(f, lat, 50);
	print_ms(f, lat, 99);
	if ((int)b == s->reference)
		fprintf(f, "  (reference: differs from master in %" PRIu64 " of %" PRIu64 ", all noise)\n",
			c->mismatched, c->compared);
	else
		fprintf(f, "%s\n", b == 0 ? "  (master)" : "");
}

static void print_header(FILE *f, const struct table *t)
{
	fprintf(f, "%-*s %9s  %-*s %8s %9s %7s %9s %9s\n", t->ep_w, "ENDPOINT", "REQUESTS", t->be_w,
		"BACKEND", "MATCH", "MISMATCH", "ERRORS", "p50 ms", "p99 ms");
}

static void print_endpoint(const struct stats *s, FILE *f, const struct table *t, const struct endpoint *ep)
{
	bool first = true;
	for (size_t b = 0; b < s->nb; b++) {
		const struct ep_backend *eb = &ep->b[b];
		if (!eb->counts.compared)
			continue;
		if (first) {
			print_clipped(f, ep->name, t->ep_w);
			fprintf(f, " %9" PRIu64, ep->requests);
		} else {
			fprintf(f, "%*s", t->ep_w + 10, "");
		}
		first = false;
		print_backend_row(s, f, t, b, &eb->counts, eb->lat);
	}
	size_t np, shown = 0, rep = 0;
	struct place_ref *pr = places_sorted(s, ep, &np);
	for (size_t i = 0; i < np; i++)
		rep += pr[i].reported;
	for (size_t i = 0; i < np && pr[i].reported && shown < PLACES_SHOWN; i++, shown++) {
		const struct place *p = pr[i].p;
		uint64_t req = ep->b[pr[i].b].counts.compared;
		fprintf(f, "    ! %-*s %-6s %s  differs in %" PRIu64 " of %" PRIu64 " (%.1f%%)", t->be_w,
			s->names[pr[i].b], kind_name(p->kind), *p->where ? p->where : "(root)", p->n_s, req,
			100.0 * (double)p->n_s / (double)(req ? req : 1));
		if (s->reference >= 0)
			fprintf(f, ", reference %" PRIu64, p->n_r);
		fputc('\n', f);
	}
	if (rep > shown)
		fprintf(f, "    ! ... and %zu more reported places (see /stats)\n", rep - shown);
	free(pr);
}

void stats_write_table(const struct stats *s, FILE *f)
{
	struct table t = { 8, 7 };
	size_t *order = endpoints_sorted(s, cmp_mismatch);

	for (size_t i = 0; i < s->neps; i++)
		t.ep_w = MAX(t.ep_w, MIN((int)strlen(s->eps[i].name), EP_WIDTH_MAX));
	for (size_t b = 0; b < s->nb; b++)
		t.be_w = MAX(t.be_w, (int)strlen(s->names[b]));

	fprintf(f, "kage comparison summary: %" PRIu64 " records, %zu endpoints", s->records, s->neps);
	if (s->reference >= 0)
		fprintf(f, ", noise from reference %s (relative %.2f, absolute %.4f)", s->names[s->reference],
			s->rel, s->abs);
	fputs("\n\n", f);
	print_header(f, &t);
	for (size_t i = 0; i < s->neps; i++)
		print_endpoint(s, f, &t, &s->eps[order[i]]);
	if (s->neps > 1) {
		fputc('\n', f);
		bool first = true;
		for (size_t b = 0; b < s->nb; b++) {
			if (!s->total[b].compared)
				continue;
			if (first) {
				print_clipped(f, "all endpoints", t.ep_w);
				fprintf(f, " %9" PRIu64, s->records);
			} else {
				fprintf(f, "%*s", t.ep_w + 10, "");
			}
			first = false;
			print_backend_row(s, f, &t, b, &s->total[b], s->total_lat[b]);
		}
	}
	if (!s->neps)
		fputs("(no comparisons yet)\n", f);
	free(order);
}
