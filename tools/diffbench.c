/*
 * diffbench: comparisons per second of the diff engine on one core.
 *
 *   build/release/tools/diffbench [seconds per case, default 1] [cases, e.g. "bc"]
 *
 * Cases: (a) identical 4 KiB JSON bodies, (b) one changed field, (c) 4 KiB
 * of text with one token changed; then, for context, (d) reordered keys
 * and reformatted (a full structural walk, no diff), (e) gzip against
 * identity, (f) case (b) followed by noise marking and stats_add as the
 * comparator does per record. Each response carries a dozen headers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "diff.h"
#include "endpoint.h"
#include "stats.h"
#include "util.h"

#define BODY 4096

struct side {
	struct diff_response r;
	struct diff_header h[16];
	char *body;
};

static void side_init(struct side *s, char *body, size_t len, const char *ctype, const char *coding)
{
	static const char *const names[] = { "Server", "Cache-Control", "Vary", "X-Request-Id", "ETag",
					     "Date", "Content-Length", "Connection", "X-Frame-Options",
					     "Strict-Transport-Security" };
	static const char *const values[] = { "nginx", "private, max-age=0", "Accept-Encoding",
					      "5f1c0a9e2b7d4c31", "\"abc\"", "Mon, 01 Jan 2024 00:00:00 GMT",
					      "4096", "keep-alive", "DENY", "max-age=31536000" };
	memset(s, 0, sizeof(*s));
	s->body = body;
	s->r.status = 200;
	s->r.headers = s->h;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		s->h[s->r.nheaders++] = (struct diff_header){ names[i], strlen(names[i]), values[i],
							      strlen(values[i]) };
	s->h[s->r.nheaders++] = (struct diff_header){ "Content-Type", 12, ctype, strlen(ctype) };
	if (coding)
		s->h[s->r.nheaders++] = (struct diff_header){ "Content-Encoding", 16, coding, strlen(coding) };
	s->r.body = (const uint8_t *)body;
	s->r.body_len = len;
	s->r.body_total = len;
	s->r.body_crc = (uint32_t)crc32(0, (const Bytef *)body, (uInt)len);
}

/* A list of users, about 4 KiB, keys in the given order. */
static size_t json_users(char *out, size_t cap, bool reordered, bool pretty, int changed)
{
	size_t n = 0;
	const char *sp = pretty ? " " : "", *nl = pretty ? "\n  " : "";
	n += (size_t)snprintf(out + n, cap - n, "{%s\"users\":%s[", nl, sp);
	for (int i = 0; n < BODY - 260; i++) {
		const char *name = i == 3 && changed ? "Annie" : "Ann";
		if (reordered)
			n += (size_t)snprintf(out + n, cap - n,
				"%s{\"tags\":[\"a\",\"b\"],\"score\":%d.5,\"active\":%s,\"address\":{\"zip\":\"100-%04d\","
				"\"city\":\"Tokyo\"},\"email\":\"u%d@example.com\",\"name\":\"%s%d\",\"id\":%d}",
				i ? "," : "", i, i % 2 ? "true" : "false", i, i, name, i, i);
		else
			n += (size_t)snprintf(out + n, cap - n,
				"%s{%s\"id\":%s%d,\"name\":%s\"%s%d\",\"email\":\"u%d@example.com\",\"active\":%s,"
				"\"score\":%d.5,\"tags\":[\"a\",\"b\"],\"address\":{\"city\":\"Tokyo\",\"zip\":\"100-%04d\"}}",
				i ? "," : "", nl, sp, i, sp, name, i, i, i % 2 ? "true" : "false", i, i);
	}
	n += (size_t)snprintf(out + n, cap - n, "],%s\"total\":%s30,\"page\":1}", nl, sp);
	return n;
}

static size_t text_page(char *out, size_t cap, const char *stamp)
{
	size_t n = (size_t)snprintf(out, cap, "<!doctype html><html><head><title>Orders</title></head><body>\n");
	for (int i = 0; n < BODY - 200; i++)
		n += (size_t)snprintf(out + n, cap - n,
				      "<tr><td>order %d</td><td>2024-01-%02d</td><td>%d.%02d EUR</td><td>shipped</td></tr>\n",
				      1000 + i, 1 + i % 28, i * 7, i % 100);
	n += (size_t)snprintf(out + n, cap - n, "<footer>rendered at %s</footer></body></html>\n", stamp);
	return n;
}

static size_t gzip_of(const char *in, size_t n, char *out, size_t cap)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = (Bytef *)out;
	z.avail_out = (uInt)cap;
	if (deflate(&z, Z_FINISH) != Z_STREAM_END)
		abort();
	deflateEnd(&z);
	return z.total_out;
}

struct bench_case {
	const char *name;
	struct side *m, *s;
	bool with_stats;
	size_t expect;
};

/* CPU time of this thread: the machine may be shared, and the comparator
 * budget is one core's time, not wall-clock time. */
static int64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static double run_case(const struct bench_case *bc, double seconds, struct diff_result *r,
		       struct diff_result *ref, struct stats *st)
{
	struct diff_options opt = { 0 };
	uint64_t n = 0;
	int64_t start = cpu_ns(), deadline = start + sec_to_ns(seconds), t;
	char ep[256];

	do {
		for (int k = 0; k < 256; k++) {
			diff_result_reset(r);
			size_t got = diff_compare(&opt, &bc->m->r, &bc->s->r, r);
			if (got != bc->expect) {
				fprintf(stderr, "%s: %zu items, expected %zu\n", bc->name, got, bc->expect);
				exit(1);
			}
			if (bc->with_stats) {
				diff_result_reset(ref);
				diff_compare(&opt, &bc->m->r, &bc->m->r, ref);
				diff_mark_noise(r, ref);
				diff_mark_all_noise(ref);
				endpoint_of("GET", 3, "/users/7?full=1", 15, ep, sizeof(ep));
				struct stats_obs o[3] = {
					{ .present = true, .status = 200, .elapsed_ns = 1800000 },
					{ .present = true, .status = 200, .elapsed_ns = 2300000, .diff = r },
					{ .present = true, .status = 200, .elapsed_ns = 1900000, .diff = ref },
				};
				stats_add(st, ep, o);
			}
		}
		n += 256;
		t = cpu_ns();
	} while (t < deadline);
	return (double)n / ((double)(t - start) / 1e9);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 1.0;
	static char a[8192], b[8192], c[8192], d[8192], e[8192], f[8192], g[8192];
	size_t al = json_users(a, sizeof(a), false, false, 0);
	memcpy(b, a, al);	/* equal bytes, another buffer */
	size_t cl = json_users(c, sizeof(c), false, false, 1);
	size_t dl = json_users(d, sizeof(d), true, true, 0);
	size_t el = text_page(e, sizeof(e), "2024-01-01T10:00:00Z");
	size_t fl = text_page(f, sizeof(f), "2024-01-01T10:00:07Z");
	size_t gl = gzip_of(a, al, g, sizeof(g));
	struct side ma, sa, sc, sd, te, tf, sg;
	const char *js = "application/json; charset=utf-8", *html = "text/html; charset=utf-8";

	side_init(&ma, a, al, js, NULL);
	side_init(&sa, b, al, js, NULL);
	side_init(&sc, c, cl, js, NULL);
	side_init(&sd, d, dl, js, NULL);
	side_init(&te, e, el, html, NULL);
	side_init(&tf, f, fl, html, NULL);
	side_init(&sg, g, gl, js, "gzip");

	const char *names[] = { "production", "sandbox", "reference" };
	struct stats_config sc_cfg = { .backends = names, .nbackends = 3, .reference = 2,
				       .noise_relative = 0.2, .noise_absolute = 0.0003 };
	struct stats *st = stats_new(&sc_cfg);
	struct diff_result *r = diff_result_new(), *ref = diff_result_new();
	const struct bench_case cases[] = {
		{ "(a) identical 4 KiB JSON", &ma, &sa, false, 0 },
		{ "(b) 4 KiB JSON, one changed field", &ma, &sc, false, 1 },
		{ "(c) 4 KiB text, one token changed", &te, &tf, false, 1 },
		{ "(d) 4 KiB JSON reordered+pretty, no diff", &ma, &sd, false, 0 },
		{ "(e) 4 KiB JSON gzip vs identity", &ma, &sg, false, 0 },
		{ "(f) = (b) + reference, noise, endpoint, stats", &ma, &sc, true, 1 },
	};

	printf("diffbench: %zu-byte JSON (%zu reformatted, %zu gzip), %zu-byte text, %.1f s CPU per case\n", al,
	       dl, gl, el, seconds);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		if (argc > 2 && !strchr(argv[2], 'a' + (int)i))
			continue;
		double rate = run_case(&cases[i], seconds, r, ref, st);
		printf("  %-48s %10.0f comparisons/s  (%.2f us each)\n", cases[i].name, rate, 1e6 / rate);
	}
	diff_result_free(r);
	diff_result_free(ref);
	stats_free(st);
	return 0;
}
