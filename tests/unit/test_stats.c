/*
 * test_stats: comparator statistics (src/stats.h) and the latency
 * histogram (src/histogram.h).
 */
#include <CUnit/Basic.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"
#include "histogram.h"
#include "stats.h"

/* ------------------------------------------------------------------ helpers */

struct json_body {
	struct diff_response r;
	struct diff_header h;
};

static void body_init(struct json_body *b, const char *json)
{
	memset(b, 0, sizeof(*b));
	b->h = (struct diff_header){ "Content-Type", 12, "application/json", 16 };
	b->r.status = 200;
	b->r.headers = &b->h;
	b->r.nheaders = 1;
	b->r.body = (const uint8_t *)json;
	b->r.body_len = strlen(json);
	b->r.body_total = b->r.body_len;
}

/* r = diff of JSON documents m and s. */
static void mkdiff(struct diff_result *r, const char *m, const char *s)
{
	struct json_body a, b;
	body_init(&a, m);
	body_init(&b, s);
	diff_result_reset(r);
	diff_compare(NULL, &a.r, &b.r, r);
}

static const char *const NAMES[] = { "production", "sandbox", "ref" };

static struct stats *stats3(int reference, size_t max_endpoints, size_t max_places)
{
	struct stats_config c = {
		.backends = NAMES, .nbackends = 3, .reference = reference,
		.noise_relative = 0.20, .noise_absolute = 0.0003,
		.max_endpoints = max_endpoints, .max_places = max_places,
	};
	return stats_new(&c);
}

/* One record: master fine; sandbox and ref with diffs (NULL = match). */
static void add(struct stats *s, const char *ep, const struct diff_result *sd, const struct diff_result *rd)
{
	struct stats_obs o[3] = {
		{ .present = true, .status = 200, .elapsed_ns = 1000000 },
		{ .present = true, .status = 200, .elapsed_ns = 2000000, .diff = sd },
		{ .present = true, .status = 200, .elapsed_ns = 1500000, .diff = rd },
	};
	stats_add(s, ep, o);
}

static size_t endpoint_index(const struct stats *s, const char *name)
{
	for (size_t e = 0; e < stats_endpoint_count(s); e++)
		if (strcmp(stats_endpoint_name(s, e), name) == 0)
			return e;
	return SIZE_MAX;
}

static bool place_find(const struct stats *s, size_t e, size_t b, const char *where, struct stats_place *out)
{
	for (size_t i = 0; i < stats_place_count(s, e, b); i++) {
		stats_place_get(s, e, b, i, out);
		if (strcmp(out->where, where) == 0)
			return true;
	}
	return false;
}

static json_t *stats_json(const struct stats *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	stats_write_json(s, f);
	fclose(f);
	json_error_t e;
	json_t *j = json_loadb(buf, len, 0, &e);
	if (!j)
		fprintf(stderr, "bad JSON (%s): %s\n", e.text, buf);
	free(buf);
	return j;
}

static char *stats_table(const struct stats *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	stats_write_table(s, f);
	fclose(f);
	return buf;
}

/* ---------------------------------------------------------------- histogram */

static void test_histogram_buckets(void)
{
	uint64_t lo, hi, plo = 0, phi = 0;
	for (size_t i = 0; i < HISTOGRAM_BUCKETS; i++) {
		histogram_bucket_bounds(i, &lo, &hi);
		CU_ASSERT(hi > lo);
		if (i)
			CU_ASSERT_EQUAL(lo, phi);	/* contiguous */
		CU_ASSERT_EQUAL(histogram_bucket_index(lo), i);
		CU_ASSERT_EQUAL(histogram_bucket_index(hi - 1), i);
		/* relative width: at most 1/32 past the exact region */
		if (lo >= 64)
			CU_ASSERT((double)(hi - lo) / (double)lo <= 1.0 / 32 + 1e-12);
		plo = lo;
		phi = hi;
	}
	(void)plo;
	CU_ASSERT_EQUAL(phi, UINT64_C(1) << HISTOGRAM_MAX_BITS);
	CU_ASSERT_EQUAL(histogram_bucket_index(UINT64_MAX), HISTOGRAM_BUCKETS - 1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_histogram_percentiles(void)
{
	struct histogram *h = histogram_new();
	CU_ASSERT_EQUAL(histogram_percentile(h, 50), 0);
	/* log-uniform from 1 us to 100 s, in ns */
	enum { N = 100000 };
	uint64_t *v = malloc(N * sizeof(*v));
	unsigned seed = 7;
	for (int i = 0; i < N; i++) {
		double x = 3.0 + 8.0 * (double)rand_r(&seed) / RAND_MAX;	/* 10^3 .. 10^11 */
		v[i] = (uint64_t)pow(10.0, x);
		histogram_record(h, v[i]);
	}
	qsort(v, N, sizeof(*v), cmp_u64);
	static const double ps[] = { 1, 10, 25, 50, 75, 90, 99, 99.9 };
	for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
		size_t rank = (size_t)ceil(ps[k] / 100.0 * N);
		double exact = (double)v[rank - 1], est = (double)histogram_percentile(h, ps[k]);
		CU_ASSERT(fabs(est - exact) / exact <= 0.02);
		if (fabs(est - exact) / exact > 0.02)
			fprintf(stderr, "p%g: %g vs %g\n", ps[k], est, exact);
	}
	CU_ASSERT_EQUAL(histogram_percentile(h, 0), v[0]);
	CU_ASSERT_EQUAL(histogram_percentile(h, 100), v[N - 1]);
	CU_ASSERT_EQUAL(h->count, N);
	/* iteration sums to the count; count_le is monotonic and complete */
	size_t i = 0;
	uint64_t lo, hi, c, total = 0;
	while (histogram_next(h, &i, &lo, &hi, &c))
		total += c;
	CU_ASSERT_EQUAL(total, N);
	CU_ASSERT(histogram_count_le(h, 1000000) <= histogram_count_le(h, 2000000));
	CU_ASSERT_EQUAL(histogram_count_le(h, UINT64_MAX), N);
	CU_ASSERT_EQUAL(histogram_count_le(h, 0), 0);
	/* merge doubles everything, keeps percentiles */
	struct histogram *g = histogram_new();
	histogram_merge(g, h);
	histogram_merge(g, h);
	CU_ASSERT_EQUAL(g->count, 2 * N);
	CU_ASSERT_EQUAL(histogram_percentile(g, 50), histogram_percentile(h, 50));
	free(g);
	free(v);
	/* small values are exact; huge ones clamp but max stays exact */
	histogram_clear(h);
	histogram_record(h, 5);
	histogram_record(h, 7);
	CU_ASSERT_EQUAL(histogram_percentile(h, 50), 5);
	CU_ASSERT_EQUAL(histogram_percentile(h, 99), 7);
	histogram_record(h, UINT64_C(1) << 40);
	CU_ASSERT_EQUAL(histogram_percentile(h, 100), UINT64_C(1) << 40);
	CU_ASSERT_EQUAL(h->max, UINT64_C(1) << 40);
	/* one value: every percentile is that value (clamped to min/max) */
	histogram_clear(h);
	histogram_record(h, 1234567);
	CU_ASSERT_EQUAL(histogram_percentile(h, 50), 1234567);
	CU_ASSERT_EQUAL(histogram_percentile(h, 99), 1234567);
	free(h);
}

/* -------------------------------------------------------------------- stats */

static void test_rule(void)
{
	/* relative: n_s > n_r * 1.2 */
	CU_ASSERT_TRUE(stats_reported(13, 10, 1000, 0.2, 0.0003));
	CU_ASSERT_FALSE(stats_reported(12, 10, 1000, 0.2, 0.0003));
	CU_ASSERT_FALSE(stats_reported(10, 10, 1000, 0.2, 0.0003));
	CU_ASSERT_FALSE(stats_reported(9, 10, 1000, 0.2, 0.0003));
	/* absolute: (n_s - n_r) / requests > 0.0003; 10/33333 is just above */
	CU_ASSERT_TRUE(stats_reported(10, 0, 33333, 0.2, 0.0003));
	CU_ASSERT_FALSE(stats_reported(10, 0, 33334, 0.2, 0.0003));
	CU_ASSERT_TRUE(stats_reported(40, 30, 33333, 0.2, 0.0003));
	CU_ASSERT_FALSE(stats_reported(40, 30, 33334, 0.2, 0.0003));
	/* both must hold */
	CU_ASSERT_FALSE(stats_reported(13, 10, 100000, 0.2, 0.0003));	/* relative yes, absolute no */
	CU_ASSERT_FALSE(stats_reported(1100, 1000, 1000, 0.2, 0.0003)); /* absolute yes, relative no */
	CU_ASSERT_FALSE(stats_reported(0, 0, 1000, 0.2, 0.0003));
	CU_ASSERT_FALSE(stats_reported(1, 0, 0, 0.2, 0.0003));
	CU_ASSERT_TRUE(stats_reported(1, 0, 1, 0.0, 0.0));
}

static void test_counting(void)
{
	struct stats *s = stats3(2, 0, 0);
	struct diff_result *d = diff_result_new(), *same = diff_result_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	mkdiff(d, "{\"items\":[{\"x\":1},{\"x\":2}]}", "{\"items\":[{\"x\":9},{\"x\":8}]}");
	CU_ASSERT_EQUAL(diff_count(d), 2);
	mkdiff(same, "{}", "{}");
	for (int i = 0; i < 10; i++)
		add(s, "GET /a", i < 3 ? d : same, same);
	/* a failed shadow, and one not selected */
	struct stats_obs o[3] = {
		{ .present = true, .status = 200, .elapsed_ns = 1000000 },
		{ .present = true, .error = true, .elapsed_ns = 10000000000LL },
		{ .present = false },
	};
	struct diff_result *err = diff_result_new();
	struct diff_response ok = { .status = 200 }, bad = { .error = "timeout" };
	diff_compare(NULL, &ok, &bad, err);
	o[1].diff = err;
	stats_add(s, "GET /a", o);

	size_t e = endpoint_index(s, "GET /a");
	CU_ASSERT_FATAL(e != SIZE_MAX);
	CU_ASSERT_EQUAL(stats_records(s), 11);
	CU_ASSERT_EQUAL(stats_endpoint_requests(s, e), 11);
	const struct stats_counts *m = stats_counts(s, e, 0), *sb = stats_counts(s, e, 1), *r = stats_counts(s, e, 2);
	CU_ASSERT_EQUAL(m->compared, 11);
	CU_ASSERT_EQUAL(m->mismatched, 0);
	CU_ASSERT_EQUAL(sb->compared, 11);
	CU_ASSERT_EQUAL(sb->matched, 7);
	CU_ASSERT_EQUAL(sb->mismatched, 4);
	CU_ASSERT_EQUAL(sb->errors, 1);
	CU_ASSERT_EQUAL(sb->status_class[0], 1);
	CU_ASSERT_EQUAL(sb->status_class[2], 10);
	CU_ASSERT_EQUAL(r->compared, 10);
	CU_ASSERT_EQUAL(r->matched, 10);
	/* both array indexes are one place, counted once per record */
	struct stats_place p;
	CU_ASSERT_FATAL(place_find(s, e, 1, "/items/*/x", &p));
	CU_ASSERT_EQUAL(p.shadow_count, 3);
	CU_ASSERT_EQUAL(p.reference_count, 0);
	CU_ASSERT_EQUAL(p.requests, 11);
	CU_ASSERT_EQUAL(p.kind, DIFF_BODY);
	CU_ASSERT_TRUE(p.reported);
	CU_ASSERT_EQUAL(stats_place_count(s, e, 1), 2);	/* and "error" */
	CU_ASSERT_FATAL(place_find(s, e, 1, "error", &p));
	CU_ASSERT_EQUAL(p.kind, DIFF_ERROR);
	/* latency: failures are not timed */
	const struct histogram *h = stats_latency(s, e, 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	CU_ASSERT_EQUAL(h->count, 10);
	CU_ASSERT(fabs((double)histogram_percentile(h, 50) - 2e6) <= 2e6 * 0.02);
	CU_ASSERT_EQUAL(stats_backend_latency(s, 0)->count, 11);
	CU_ASSERT_PTR_NULL(stats_counts(s, e, 3));
	diff_result_free(d);
	diff_result_free(same);
	diff_result_free(err);
	stats_free(s);
}

/* Diffy's rule end to end: the shadow differs at /a in n_s of 1000
 * records, the reference in 10 (the same records first). */
static bool reported_after(int n_s, int n_r, uint64_t *ns_out, uint64_t *nr_out)
{
	struct stats *s = stats3(2, 0, 0);
	struct diff_result *d = diff_result_new(), *same = diff_result_new();
	mkdiff(d, "{\"a\":1}", "{\"a\":2}");
	mkdiff(same, "{\"a\":1}", "{\"a\":1}");
	for (int i = 0; i < 1000; i++)
		add(s, "GET /x", i < n_s ? d : same, i < n_r ? d : same);
	struct stats_place p = { 0 };
	bool found = place_find(s, 0, 1, "/a", &p);
	CU_ASSERT(found);
	*ns_out = p.shadow_count;
	*nr_out = p.reference_count;
	/* the reference's own place never reports */
	struct stats_place rp;
	if (n_r && place_find(s, 0, 2, "/a", &rp)) {
		CU_ASSERT_EQUAL(rp.shadow_count, (uint64_t)n_r);
		CU_ASSERT_EQUAL(rp.reference_count, (uint64_t)n_r);
		CU_ASSERT_FALSE(rp.reported);
	}
	diff_result_free(d);
	diff_result_free(same);
	stats_free(s);
	return p.reported;
}

static void test_rule_end_to_end(void)
{
	uint64_t ns, nr;
	CU_ASSERT_TRUE(reported_after(13, 10, &ns, &nr));
	CU_ASSERT_EQUAL(ns, 13);
	CU_ASSERT_EQUAL(nr, 10);
	CU_ASSERT_FALSE(reported_after(12, 10, &ns, &nr));	/* relative margin */
	CU_ASSERT_TRUE(reported_after(1, 0, &ns, &nr));		/* 1/1000 > 0.0003 */
	CU_ASSERT_FALSE(reported_after(10, 10, &ns, &nr));
	/* the reference differing where the shadow does not: n_r counted */
	CU_ASSERT_FALSE(reported_after(1, 5, &ns, &nr));
	CU_ASSERT_EQUAL(nr, 5);
}

static void test_absolute_end_to_end(void)
{
	/* 1 of 3334 requests: 0.000299.. <= 0.0003, not reported; 1 of 3333 is. */
	for (int k = 0; k < 2; k++) {
		struct stats *s = stats3(-1, 0, 0);
		struct diff_result *d = diff_result_new(), *same = diff_result_new();
		mkdiff(d, "{\"a\":1}", "{\"a\":2}");
		mkdiff(same, "{}", "{}");
		int n = k ? 3334 : 3333;
		for (int i = 0; i < n; i++)
			add(s, "GET /x", i == 0 ? d : same, NULL);
		struct stats_place p;
		CU_ASSERT_FATAL(place_find(s, 0, 1, "/a", &p));
		CU_ASSERT_EQUAL(p.reported, k == 0);
		CU_ASSERT_EQUAL(p.reference_count, 0);
		diff_result_free(d);
		diff_result_free(same);
		stats_free(s);
	}
}

/* Noise makes a record match, but the place still counts for Diffy's rule. */
static void test_noise_counts(void)
{
	struct stats *s = stats3(2, 0, 0);
	struct diff_result *d = diff_result_new(), *rd = diff_result_new();
	mkdiff(d, "{\"t\":1,\"x\":1}", "{\"t\":2,\"x\":1}");
	mkdiff(rd, "{\"t\":1,\"x\":1}", "{\"t\":3,\"x\":1}");
	diff_mark_noise(d, rd);
	diff_mark_all_noise(rd);
	CU_ASSERT_TRUE(diff_matches(d));
	for (int i = 0; i < 10; i++)
		add(s, "GET /t", d, rd);
	const struct stats_counts *c = stats_counts(s, 0, 1), *r = stats_counts(s, 0, 2);
	CU_ASSERT_EQUAL(c->matched, 10);
	CU_ASSERT_EQUAL(c->mismatched, 0);
	/* the reference "matches" only without differences, noise or not */
	CU_ASSERT_EQUAL(r->matched, 0);
	CU_ASSERT_EQUAL(r->mismatched, 10);
	struct stats_place p;
	CU_ASSERT_FATAL(place_find(s, 0, 1, "/t", &p));
	CU_ASSERT_EQUAL(p.shadow_count, 10);
	CU_ASSERT_EQUAL(p.reference_count, 10);
	CU_ASSERT_FALSE(p.reported);
	diff_result_free(d);
	diff_result_free(rd);
	stats_free(s);
}

static void test_other_folding(void)
{
	struct stats *s = stats3(-1, 2, 3);
	struct diff_result *d = diff_result_new();
	mkdiff(d, "{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1}", "{\"a\":2,\"b\":2,\"c\":2,\"d\":2,\"e\":2}");
	add(s, "GET /1", d, NULL);
	add(s, "GET /2", d, NULL);
	add(s, "GET /3", d, NULL);
	add(s, "GET /4", d, NULL);
	add(s, "GET /1", d, NULL);
	CU_ASSERT_EQUAL(stats_endpoint_count(s), 3);
	size_t other = endpoint_index(s, "other");
	CU_ASSERT_FATAL(other != SIZE_MAX);
	CU_ASSERT_EQUAL(stats_endpoint_requests(s, other), 2);
	CU_ASSERT_EQUAL(stats_endpoint_requests(s, endpoint_index(s, "GET /1")), 2);
	/* three named places, the rest under "(other)", counted once per record */
	size_t e = endpoint_index(s, "GET /1");
	CU_ASSERT_EQUAL(stats_place_count(s, e, 1), 4);
	struct stats_place p;
	CU_ASSERT(place_find(s, e, 1, "/a", &p));
	CU_ASSERT(place_find(s, e, 1, "/c", &p));
	CU_ASSERT_FALSE(place_find(s, e, 1, "/d", &p));
	CU_ASSERT_FATAL(place_find(s, e, 1, "(other)", &p));
	CU_ASSERT_EQUAL(p.shadow_count, 2);
	diff_result_free(d);
	stats_free(s);
}

static void test_json_output(void)
{
	struct stats *s = stats3(2, 0, 0);
	struct diff_result *d = diff_result_new(), *same = diff_result_new();
	mkdiff(d, "{\"user\":{\"name\":\"Ann\"}}", "{\"user\":{\"name\":\"Anne\"}}");
	mkdiff(same, "{}", "{}");
	for (int i = 0; i < 20; i++)
		add(s, "GET /users/:id", i < 5 ? d : same, same);
	add(s, "GET /caf\xc3\xa9/\"q\"\xff", same, same);
	json_t *j = stats_json(s);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	json_t *ep = json_object_get(j, "GET /users/:id");
	CU_ASSERT_PTR_NOT_NULL_FATAL(ep);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(ep, "requests")), 20);
	json_t *sb = json_object_get(json_object_get(ep, "backends"), "sandbox");
	CU_ASSERT_PTR_NOT_NULL_FATAL(sb);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(sb, "compared")), 20);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(sb, "matched")), 15);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(sb, "mismatched")), 5);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(sb, "errors")), 0);
	json_t *lat = json_object_get(sb, "latency_ms");
	CU_ASSERT(fabs(json_real_value(json_object_get(lat, "p50")) - 2.0) < 0.04);
	CU_ASSERT_PTR_NOT_NULL(json_object_get(lat, "p90"));
	CU_ASSERT_PTR_NOT_NULL(json_object_get(lat, "p99"));
	CU_ASSERT_PTR_NOT_NULL(json_object_get(json_object_get(ep, "backends"), "production"));
	json_t *places = json_object_get(ep, "places");
	CU_ASSERT_EQUAL_FATAL(json_array_size(places), 1);
	json_t *p = json_array_get(places, 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(p, "backend")), "sandbox");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(p, "kind")), "body");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(p, "where")), "/user/name");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(p, "shadow_count")), 5);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(p, "reference_count")), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(p, "requests")), 20);
	CU_ASSERT_TRUE(json_is_true(json_object_get(p, "reported")));
	/* odd bytes in names stay valid JSON (invalid UTF-8 as U+FFFD) */
	CU_ASSERT_PTR_NOT_NULL(json_object_get(j, "GET /caf\xc3\xa9/\"q\"\xef\xbf\xbd"));
	json_decref(j);

	/* empty stats: an empty object */
	struct stats *e = stats3(-1, 0, 0);
	j = stats_json(e);
	CU_ASSERT(json_is_object(j) && json_object_size(j) == 0);
	json_decref(j);
	stats_free(e);
	diff_result_free(d);
	diff_result_free(same);
	stats_free(s);
}

static void test_table(void)
{
	struct stats *s = stats3(2, 0, 0);
	struct diff_result *d = diff_result_new(), *same = diff_result_new();
	mkdiff(d, "{\"user\":{\"name\":\"Ann\"}}", "{\"user\":{\"name\":\"Anne\"}}");
	mkdiff(same, "{}", "{}");
	for (int i = 0; i < 20; i++)
		add(s, "GET /users/:id", i < 5 ? d : same, same);
	for (int i = 0; i < 50; i++)
		add(s, "GET /a/very/long/endpoint/name/that/goes/on/and/on/forever", same, same);
	char *t = stats_table(s);
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "70 records"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "ENDPOINT"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "75.0%"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "/user/name"));
	/* The reference's row says how often it differed, and that it is noise. */
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "(reference: differs from master in"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "all noise)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "all endpoints"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "..."));	/* long name clipped */
	/* sorted by mismatches: /users first */
	CU_ASSERT(strstr(t, "GET /users/:id") < strstr(t, "GET /a/very"));
	if (getenv("SHOW_TABLE"))
		fputs(t, stderr);
	free(t);
	diff_result_free(d);
	diff_result_free(same);
	stats_free(s);
	/* nothing yet */
	s = stats3(-1, 0, 0);
	t = stats_table(s);
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "no comparisons yet"));
	free(t);
	stats_free(s);
}

static void test_config(void)
{
	struct stats_config c = { 0 };
	CU_ASSERT_PTR_NULL(stats_new(&c));
	CU_ASSERT_PTR_NULL(stats_new(NULL));
	stats_free(NULL);
	/* a reference index out of range, or the master, means none */
	c.backends = NAMES;
	c.nbackends = 2;
	c.reference = 5;
	struct stats *s = stats_new(&c);
	CU_ASSERT_PTR_NOT_NULL(s);
	stats_free(s);
}

int main(void)
{
	static const struct {
		const char *name;
		CU_TestFunc fn;
	} tests[] = {
		{ "histogram buckets", test_histogram_buckets },
		{ "histogram percentiles", test_histogram_percentiles },
		{ "diffy rule", test_rule },
		{ "counting", test_counting },
		{ "diffy rule end to end", test_rule_end_to_end },
		{ "absolute margin end to end", test_absolute_end_to_end },
		{ "noise matches, places count", test_noise_counts },
		{ "other folding", test_other_folding },
		{ "json output", test_json_output },
		{ "table", test_table },
		{ "config", test_config },
	};

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	CU_pSuite suite = CU_add_suite("stats", NULL, NULL);
	if (!suite)
		goto fail;
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		if (!CU_add_test(suite, tests[i].name, tests[i].fn))
			goto fail;
	CU_basic_set_mode(CU_BRM_VERBOSE);
	if (CU_basic_run_tests() != CUE_SUCCESS)
		goto fail;
	unsigned failures = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures != 0;
fail:
	fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
	CU_cleanup_registry();
	return 2;
}
