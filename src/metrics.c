/*
 * metrics: see metrics.h.
 */
#include "metrics.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comparator.h"
#include "counters.h"
#include "dashboard.h"
#include "histogram.h"
#include "server.h"
#include "shard.h"
#include "stats.h"
#include "util.h"

/* Prometheus `le` bounds of the latency histograms, in seconds. */
static const double le_seconds[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

/* Finer bounds for the dashboard's distribution charts, in milliseconds. */
static const double le_chart_ms[] = {
	0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70,
	100, 150, 200, 300, 500, 700, 1000, 2000, 5000, 10000,
};

static const char *const class_names[6] = { "other", "1xx", "2xx", "3xx", "4xx", "5xx" };

static const char *const error_kinds[BERR_KINDS] = {
	[BERR_CONNECT] = "connect", [BERR_TIMEOUT] = "timeout", [BERR_RESET] = "reset",
	[BERR_MALFORMED] = "malformed", [BERR_DROPPED] = "dropped",
};

/* --- one snapshot of the shards' counters ---------------------------------------- */

struct backend_totals {
	uint64_t requests, responses[6], errors[BERR_KINDS], failed[BERR_KINDS], connects, reuses, retries;
};

struct totals {
	uint64_t accepted, conns_open, accept_backoffs, requests, responses[6];
	uint64_t client_errors, client_timeouts, upgrades;
	uint64_t zc_bytes, copied_bytes, zc_sends, zc_kernel_copied;
	uint64_t eligible, skipped[SKIP_REASONS], sent, inflight, queued, dropped;
	uint64_t enobufs, cq_overflows, sqes, enters;
	uint64_t queue_depth;
	struct backend_totals be[KAGE_MAX_BACKENDS];
};

static void add_backend(struct backend_totals *t, struct backend_counters *c)
{
	t->requests += CTR_GET(c, requests);
	for (int k = 0; k < 6; k++)
		t->responses[k] += CTR_GET(c, responses[k]);
	for (int k = 0; k < BERR_KINDS; k++) {
		t->errors[k] += CTR_GET(c, errors[k]);
		t->failed[k] += CTR_GET(c, failed[k]);
	}
	t->connects += CTR_GET(c, connects);
	t->reuses += CTR_GET(c, reuses);
	t->retries += CTR_GET(c, retries);
}

/* Relaxed loads of each shard's counters (counters.h), summed. */
static void add_shard(struct totals *t, struct shard *sh, unsigned nbackends)
{
	struct shard_counters *c = &sh->ctr;
	t->accepted += CTR_GET(c, accepted);
	t->conns_open += CTR_GET(c, conns_open);
	t->accept_backoffs += CTR_GET(c, accept_backoffs);
	t->requests += CTR_GET(c, requests);
	for (int k = 0; k < 6; k++)
		t->responses[k] += CTR_GET(c, responses[k]);
	t->client_errors += CTR_GET(c, client_errors);
	t->client_timeouts += CTR_GET(c, client_timeouts);
	t->upgrades += CTR_GET(c, upgrades);
	t->zc_bytes += CTR_GET(c, body_bytes_zerocopy);
	t->copied_bytes += CTR_GET(c, body_bytes_copied);
	t->zc_sends += CTR_GET(c, zc_sends);
	t->zc_kernel_copied += CTR_GET(c, zc_kernel_copied);
	t->eligible += CTR_GET(c, shadow_eligible);
	for (int r = 0; r < SKIP_REASONS; r++)
		t->skipped[r] += CTR_GET(c, shadow_skipped[r]);
	t->sent += CTR_GET(c, shadow_sent);
	t->inflight += CTR_GET(c, shadow_inflight);
	t->queued += CTR_GET(c, records_queued);
	t->dropped += CTR_GET(c, records_dropped);
	t->enobufs += CTR_GET(c, enobufs);
	t->cq_overflows += CTR_GET(c, cq_overflows);
	t->sqes += CTR_GET(c, sqes);
	t->enters += CTR_GET(c, enters);
	t->queue_depth += spsc_depth(&sh->to_cmp);
	for (unsigned b = 0; b < nbackends; b++)
		add_backend(&t->be[b], &c->backend[b]);
}

static void totals_read(struct comparator *c, struct totals *t)
{
	memset(t, 0, sizeof *t);
	for (unsigned s = 0; s < c->nshards; s++)
		add_shard(t, &c->shards[s], c->cfg->nbackends);
	t->dropped += atomic_load_explicit(&c->ctr.abandoned, memory_order_relaxed);
}

static uint64_t cctr(_Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

static bool draining(const struct comparator *c)
{
	return c->srv && server_draining(c->srv);
}

static double uptime_seconds(const struct comparator *c)
{
	return (double)(now_ns() - c->started_ns) / (double)NS_PER_SEC;
}

static const char *role_of(const struct comparator *c, unsigned b)
{
	if (b == 0)
		return "master";
	return (int)b == c->cfg->reference ? "reference" : "shadow";
}

/* --- endpoints, capped --------------------------------------------------------------- */

/* Endpoints by requests, most first: the first METRICS_TOP_ENDPOINTS get
 * their own label value. */
static int cmp_requests(const void *x, const void *y, void *arg)
{
	const struct stats *s = arg;
	size_t a = *(const size_t *)x, b = *(const size_t *)y;
	uint64_t ra = stats_endpoint_requests(s, a), rb = stats_endpoint_requests(s, b);
	if (ra != rb)
		return ra > rb ? -1 : 1;
	return strcmp(stats_endpoint_name(s, a), stats_endpoint_name(s, b));
}

static size_t *endpoints_by_requests(const struct stats *s, size_t *n)
{
	*n = stats_endpoint_count(s);
	size_t *order = malloc((*n ? *n : 1) * sizeof *order);
	if (!order) {
		*n = 0;
		return NULL;
	}
	for (size_t i = 0; i < *n; i++)
		order[i] = i;
	qsort_r(order, *n, sizeof *order, cmp_requests, (void *)s);
	return order;
}

/* =============================================================================
 * /metrics
 * ============================================================================= */

static void family(struct jbuf *b, const char *name, const char *type, const char *help)
{
	jb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge1(struct jbuf *b, const char *name, const char *help, uint64_t v)
{
	family(b, name, "gauge", help);
	jb_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void counter1(struct jbuf *b, const char *name, const char *help, uint64_t v)
{
	family(b, name, "counter", help);
	jb_printf(b, "%s %" PRIu64 "\n", name, v);
}

/*
 * A label value: backslash, double quote and newline escaped as the
 * format wants; other control bytes and every non-ASCII byte as %XX, so
 * the output stays valid UTF-8 whatever bytes a request path carried.
 */
static void label_value(struct jbuf *b, const char *s)
{
	jb_lit(b, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\\' || *p == '"')
			jb_printf(b, "\\%c", *p);
		else if (*p == '\n')
			jb_lit(b, "\\n");
		else if (*p < 0x20 || *p >= 0x7f)
			jb_printf(b, "%%%02X", *p);
		else
			jb_raw(b, (const char *)p, 1);
	}
	jb_lit(b, "\"");
}

static void write_process(struct comparator *c, struct jbuf *b)
{
	family(b, "kage_info", "gauge", "Always 1; the version as a label.");
	jb_printf(b, "kage_info{version=\"%s\"} 1\n", KAGE_VERSION);
	family(b, "kage_start_time_seconds", "gauge", "When kage started, in seconds since the epoch.");
	jb_printf(b, "kage_start_time_seconds %.3f\n", (double)c->started_wall_ns / (double)NS_PER_SEC);
	gauge1(b, "kage_draining", "1 once SIGTERM or SIGINT started the drain.", draining(c));
	gauge1(b, "kage_shards", "Shard threads (--threads).", c->nshards);
	family(b, "kage_backend_info", "gauge", "Always 1; each backend's role and address.");
	for (unsigned i = 0; i < c->cfg->nbackends; i++) {
		jb_printf(b, "kage_backend_info{backend=\"%s\",role=\"%s\",address=", c->cfg->backends[i].name,
			  role_of(c, i));
		label_value(b, c->cfg->backends[i].addr.text);
		jb_lit(b, "} 1\n");
	}
}

static void write_clients(const struct totals *t, struct jbuf *b)
{
	counter1(b, "kage_requests_total", "Client requests (request heads) received.", t->requests);
	family(b, "kage_responses_total", "counter", "Responses sent to clients, by status class.");
	for (int k = 1; k <= 5; k++)
		jb_printf(b, "kage_responses_total{class=\"%s\"} %" PRIu64 "\n", class_names[k], t->responses[k]);
	jb_printf(b, "kage_responses_total{class=\"other\"} %" PRIu64 "\n", t->responses[0]);
	counter1(b, "kage_client_errors_total",
		 "4xx responses kage generated itself (malformed or too slow requests).", t->client_errors);
	counter1(b, "kage_client_timeouts_total", "Client connections closed by --client-timeout.",
		 t->client_timeouts);
	counter1(b, "kage_upgrades_total", "Upgrade (WebSocket) tunnels opened.", t->upgrades);
	counter1(b, "kage_connections_accepted_total", "Client connections accepted.", t->accepted);
	gauge1(b, "kage_connections_open", "Client connections open.", t->conns_open);
	counter1(b, "kage_accept_backoffs_total", "Times accepting paused (--max-conns or EMFILE).",
		 t->accept_backoffs);
	family(b, "kage_body_bytes_total", "counter",
	       "Master response body bytes sent to clients: zerocopy from the buffer they arrived in, "
	       "or copied.");
	jb_printf(b, "kage_body_bytes_total{mode=\"zerocopy\"} %" PRIu64 "\n", t->zc_bytes);
	jb_printf(b, "kage_body_bytes_total{mode=\"copied\"} %" PRIu64 "\n", t->copied_bytes);
	counter1(b, "kage_send_zc_total", "Sends made with SEND_ZC (--send-zc).", t->zc_sends);
	counter1(b, "kage_send_zc_copied_total", "SEND_ZC sends the kernel copied anyway.",
		 t->zc_kernel_copied);
}

/* One counter family over every backend; `off` is the field's offset in
 * struct backend_totals. */
static void backend_family(struct comparator *c, const struct totals *t, struct jbuf *b,
			   const char *name, const char *help, size_t off)
{
	family(b, name, "counter", help);
	for (unsigned i = 0; i < c->cfg->nbackends; i++)
		jb_printf(b, "%s{backend=\"%s\"} %" PRIu64 "\n", name, c->cfg->backends[i].name,
			  *(const uint64_t *)(const void *)((const char *)&t->be[i] + off));
}

static void write_backends(struct comparator *c, const struct totals *t, struct jbuf *b)
{
	backend_family(c, t, b, "kage_backend_requests_total", "Requests sent to each backend.",
		       offsetof(struct backend_totals, requests));
	family(b, "kage_backend_responses_total", "counter", "Responses from each backend, by status class.");
	for (unsigned i = 0; i < c->cfg->nbackends; i++)
		for (int k = 0; k < 6; k++)
			jb_printf(b, "kage_backend_responses_total{backend=\"%s\",class=\"%s\"} %" PRIu64 "\n",
				  c->cfg->backends[i].name, class_names[k], t->be[i].responses[k]);
	family(b, "kage_backend_errors_total", "counter",
	       "Failed exchanges with each backend, by kind (connect, timeout, reset, malformed).");
	for (unsigned i = 0; i < c->cfg->nbackends; i++)
		for (int k = BERR_CONNECT; k <= BERR_MALFORMED; k++)
			jb_printf(b, "kage_backend_errors_total{backend=\"%s\",kind=\"%s\"} %" PRIu64 "\n",
				  c->cfg->backends[i].name, error_kinds[k], t->be[i].errors[k]);
	backend_family(c, t, b, "kage_backend_connections_opened_total",
		       "Connections opened to each backend.", offsetof(struct backend_totals, connects));
	backend_family(c, t, b, "kage_backend_connection_reuses_total",
		       "Requests sent on a pooled keep-alive connection.",
		       offsetof(struct backend_totals, reuses));
	backend_family(c, t, b, "kage_backend_retries_total",
		       "Idempotent requests retried after a stale pooled connection.",
		       offsetof(struct backend_totals, retries));
}

static void write_histogram(struct jbuf *b, const char *name, const char *backend,
			    const struct histogram *h)
{
	for (size_t i = 0; i < ARRAY_SIZE(le_seconds); i++) {
		uint64_t n = h ? histogram_count_le(h, (uint64_t)(le_seconds[i] * (double)NS_PER_SEC)) : 0;
		jb_printf(b, "%s_bucket{backend=\"%s\",le=\"%g\"} %" PRIu64 "\n", name, backend,
			  le_seconds[i], n);
	}
	uint64_t count = h ? h->count : 0;
	jb_printf(b, "%s_bucket{backend=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", name, backend, count);
	jb_printf(b, "%s_sum{backend=\"%s\"} %.9f\n", name, backend,
		  h ? (double)h->sum / (double)NS_PER_SEC : 0.0);
	jb_printf(b, "%s_count{backend=\"%s\"} %" PRIu64 "\n", name, backend, count);
}

static void write_latency(struct comparator *c, struct jbuf *b)
{
	static const char name[] = "kage_backend_response_duration_seconds";
	family(b, name, "histogram",
	       "Response time of each backend for shadowed requests (successful responses), "
	       "as compared by the comparator.");
	for (unsigned i = 0; i < c->cfg->nbackends; i++)
		write_histogram(b, name, c->cfg->backends[i].name, stats_backend_latency(c->stats, i));
}

static void write_shadows(struct comparator *c, const struct totals *t, struct jbuf *b)
{
	counter1(b, "kage_shadow_eligible_total", "Requests considered for shadowing.", t->eligible);
	counter1(b, "kage_shadows_sent_total", "Shadow requests sent (one per shadow backend).", t->sent);
	family(b, "kage_shadows_skipped_total", "counter", "Shadow requests not sent, by reason.");
	for (int r = 0; r < SKIP_REASONS; r++)
		jb_printf(b, "kage_shadows_skipped_total{reason=\"%s\"} %" PRIu64 "\n",
			  shadow_reason_name(r), t->skipped[r]);
	family(b, "kage_shadow_failures_total", "counter",
	       "Shadow exchanges that failed (after the one retry on a stale connection), by shadow backend and reason.");
	for (unsigned i = 1; i < c->cfg->nbackends; i++)
		for (int k = BERR_CONNECT; k <= BERR_MALFORMED; k++)
			jb_printf(b, "kage_shadow_failures_total{backend=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
				  c->cfg->backends[i].name, error_kinds[k], t->be[i].failed[k]);
	gauge1(b, "kage_shadow_records_inflight", "Shadowed requests not yet handed to the comparator.",
	       t->inflight);
}

/* Comparisons of shadow b: the top endpoints one by one, the rest as "other". */
static void write_comparisons_of(struct comparator *c, struct jbuf *b, unsigned be,
				 const size_t *order, size_t n)
{
	const char *name = c->cfg->backends[be].name;
	uint64_t other[2] = { 0, 0 };
	bool any_other = false;
	for (size_t k = 0; k < n; k++) {
		const char *ep = stats_endpoint_name(c->stats, order[k]);
		const struct stats_counts *sc = stats_counts(c->stats, order[k], be);
		if (!sc || !sc->compared)
			continue;
		if (k >= METRICS_TOP_ENDPOINTS || !strcmp(ep, "other")) {
			other[0] += sc->matched;
			other[1] += sc->mismatched;
			any_other = true;
			continue;
		}
		for (int m = 0; m < 2; m++) {
			jb_printf(b, "kage_comparisons_total{backend=\"%s\",endpoint=", name);
			label_value(b, ep);
			jb_printf(b, ",result=\"%s\"} %" PRIu64 "\n", m ? "mismatch" : "match",
				  m ? sc->mismatched : sc->matched);
		}
	}
	for (int m = 0; any_other && m < 2; m++)
		jb_printf(b, "kage_comparisons_total{backend=\"%s\",endpoint=\"other\",result=\"%s\"} %" PRIu64
			     "\n", name, m ? "mismatch" : "match", other[m]);
}

static void write_comparisons(struct comparator *c, const struct totals *t, struct jbuf *b)
{
	counter1(b, "kage_records_queued_total", "Comparison records handed to the comparator.", t->queued);
	counter1(b, "kage_records_dropped_total", "Records never compared: left in the queue at the --drain-timeout deadline (a comparator a queue behind otherwise makes shadows skip, reason queue_full).",
		 t->dropped);
	gauge1(b, "kage_comparator_queue_depth", "Records waiting in the queues to the comparator.",
	       t->queue_depth);
	counter1(b, "kage_comparator_batches_total",
		 "Times the comparator woke (or ended a nap) and found records; records compared "
		 "per batch is what one wake-up bought.",
		 cctr(&c->ctr.batches));
	family(b, "kage_records_compared_total", "counter", "Records compared, by result.");
	jb_printf(b, "kage_records_compared_total{result=\"match\"} %" PRIu64 "\n", cctr(&c->ctr.matched));
	jb_printf(b, "kage_records_compared_total{result=\"mismatch\"} %" PRIu64 "\n",
		  cctr(&c->ctr.mismatched));
	family(b, "kage_comparisons_total", "counter",
	       "Shadow responses compared with master's, by shadow, endpoint (the 50 busiest; the "
	       "rest as other) and result.");
	size_t n;
	size_t *order = endpoints_by_requests(c->stats, &n);
	for (unsigned i = 1; i < c->cfg->nbackends; i++)
		write_comparisons_of(c, b, i, order, n);
	free(order);
	counter1(b, "kage_diff_log_lines_written_total", "Records written to the diff log.",
		 cctr(&c->ctr.logged));
	counter1(b, "kage_diff_log_lines_lost_total",
		 "Records the diff log could not take (write error, full disk, closed pipe).",
		 cctr(&c->ctr.lost));
}

static void write_uring(const struct totals *t, struct jbuf *b)
{
	counter1(b, "kage_io_uring_submissions_total", "Submission queue entries submitted.", t->sqes);
	counter1(b, "kage_io_uring_enters_total", "io_uring_enter system calls.", t->enters);
	counter1(b, "kage_io_uring_cq_overflows_total", "Times a shard found its completion queue overflowed (completions held back by the kernel, or dropped); a steady rise means --ring-entries is too small.", t->cq_overflows);
	counter1(b, "kage_io_uring_enobufs_total",
		 "Receives that found the provided-buffer ring empty (ENOBUFS).", t->enobufs);
}

void metrics_write_prometheus(struct comparator *c, struct jbuf *b)
{
	struct totals t;
	totals_read(c, &t);
	write_process(c, b);
	write_clients(&t, b);
	write_backends(c, &t, b);
	write_latency(c, b);
	write_shadows(c, &t, b);
	write_comparisons(c, &t, b);
	write_uring(&t, b);
	if (c->admin)
		gauge1(b, "kage_admin_connections", "Connections open to this admin listener.",
		       admin_conns(c->admin));
}

/* =============================================================================
 * /stats
 * ============================================================================= */

static void json_classes(struct jbuf *b, const uint64_t v[6])
{
	jb_lit(b, "{");
	for (int k = 1; k <= 6; k++)
		jb_printf(b, "%s\"%s\":%" PRIu64, k > 1 ? "," : "", class_names[k % 6], v[k % 6]);
	jb_lit(b, "}");
}

static void json_backend_counters(struct comparator *c, const struct totals *t, struct jbuf *b, unsigned i)
{
	const struct backend_totals *bt = &t->be[i];
	jb_cstr(b, c->cfg->backends[i].name);
	jb_printf(b, ":{\"role\":\"%s\",\"requests\":%" PRIu64 ",\"responses\":", role_of(c, i), bt->requests);
	json_classes(b, bt->responses);
	jb_lit(b, ",\"errors\":{");
	for (int k = BERR_CONNECT; k <= BERR_MALFORMED; k++)
		jb_printf(b, "%s\"%s\":%" PRIu64, k > BERR_CONNECT ? "," : "", error_kinds[k], bt->errors[k]);
	jb_printf(b, "},\"connections_opened\":%" PRIu64 ",\"reuses\":%" PRIu64 ",\"retries\":%" PRIu64,
		  bt->connects, bt->reuses, bt->retries);
	if (i > 0 && i < KAGE_MAX_BACKENDS)
		jb_printf(b, ",\"matched\":%" PRIu64 ",\"mismatched\":%" PRIu64 ",\"failed\":%" PRIu64,
			  cctr(&c->ctr.backend_matched[i]), cctr(&c->ctr.backend_mismatched[i]),
			  cctr(&c->ctr.backend_errors[i]));
	jb_lit(b, "}");
}

static void json_shadows(const struct totals *t, struct jbuf *b)
{
	jb_printf(b, ",\"shadows\":{\"eligible\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"inflight\":%" PRIu64
		     ",\"skipped\":{", t->eligible, t->sent, t->inflight);
	for (int r = 0; r < SKIP_REASONS; r++)
		jb_printf(b, "%s\"%s\":%" PRIu64, r ? "," : "", shadow_reason_name(r), t->skipped[r]);
	jb_lit(b, "}}");
}

static void json_counters(struct comparator *c, const struct totals *t, struct jbuf *b)
{
	jb_printf(b, "\"counters\":{\"requests\":%" PRIu64 ",\"responses\":", t->requests);
	json_classes(b, t->responses);
	jb_printf(b, ",\"client_errors\":%" PRIu64 ",\"client_timeouts\":%" PRIu64 ",\"upgrades\":%" PRIu64
		     ",\"connections\":{\"accepted\":%" PRIu64 ",\"open\":%" PRIu64
		     ",\"accept_backoffs\":%" PRIu64 "}",
		  t->client_errors, t->client_timeouts, t->upgrades, t->accepted, t->conns_open,
		  t->accept_backoffs);
	json_shadows(t, b);
	jb_printf(b, ",\"records\":{\"queued\":%" PRIu64 ",\"dropped\":%" PRIu64 ",\"queue_depth\":%" PRIu64
		     ",\"compared\":%" PRIu64 ",\"matched\":%" PRIu64 ",\"mismatched\":%" PRIu64
		     ",\"batches\":%" PRIu64 "}",
		  t->queued, t->dropped, t->queue_depth, cctr(&c->ctr.records), cctr(&c->ctr.matched),
		  cctr(&c->ctr.mismatched), cctr(&c->ctr.batches));
	jb_printf(b, ",\"diff_log\":{\"written\":%" PRIu64 ",\"lost\":%" PRIu64 "}", cctr(&c->ctr.logged),
		  cctr(&c->ctr.lost));
	jb_lit(b, ",\"backends\":{");
	for (unsigned i = 0; i < c->cfg->nbackends; i++) {
		if (i)
			jb_lit(b, ",");
		json_backend_counters(c, t, b, i);
	}
	jb_printf(b, "},\"io_uring\":{\"submissions\":%" PRIu64 ",\"enters\":%" PRIu64
		     ",\"cq_overflows\":%" PRIu64 ",\"enobufs\":%" PRIu64 "}",
		  t->sqes, t->enters, t->cq_overflows, t->enobufs);
	jb_printf(b, ",\"body_bytes\":{\"zerocopy\":%" PRIu64 ",\"copied\":%" PRIu64 "}}", t->zc_bytes,
		  t->copied_bytes);
}

static void json_ms_or_null(struct jbuf *b, const struct histogram *h, double p)
{
	if (h && h->count)
		jb_printf(b, "%.3f", (double)histogram_percentile(h, p) / (double)NS_PER_MSEC);
	else
		jb_lit(b, "null");
}

/* One backend's latency: percentiles and cumulative buckets for the charts. */
static void json_latency_of(struct jbuf *b, const struct histogram *h)
{
	uint64_t count = h ? h->count : 0;
	jb_printf(b, "{\"count\":%" PRIu64 ",\"sum_ms\":%.3f", count,
		  h ? (double)h->sum / (double)NS_PER_MSEC : 0.0);
	static const double pct[] = { 50, 90, 99 };
	static const char *const pname[] = { "p50_ms", "p90_ms", "p99_ms" };
	for (size_t i = 0; i < ARRAY_SIZE(pct); i++) {
		jb_printf(b, ",\"%s\":", pname[i]);
		json_ms_or_null(b, h, pct[i]);
	}
	jb_lit(b, ",\"buckets\":[");
	for (size_t i = 0; i < ARRAY_SIZE(le_chart_ms); i++) {
		uint64_t n = h ? histogram_count_le(h, (uint64_t)(le_chart_ms[i] * (double)NS_PER_MSEC)) : 0;
		jb_printf(b, "%s{\"le_ms\":%g,\"count\":%" PRIu64 "}", i ? "," : "", le_chart_ms[i], n);
	}
	jb_printf(b, ",{\"le_ms\":null,\"count\":%" PRIu64 "}]}", count);
}

static void json_latency(struct comparator *c, struct jbuf *b)
{
	jb_lit(b, ",\"latency\":{");
	for (unsigned i = 0; i < c->cfg->nbackends; i++) {
		if (i)
			jb_lit(b, ",");
		jb_cstr(b, c->cfg->backends[i].name);
		jb_lit(b, ":");
		json_latency_of(b, stats_backend_latency(c->stats, i));
	}
	jb_lit(b, "}");
}

/* stats_write_json() writes to a FILE: let it write into memory. */
static void json_endpoints(struct comparator *c, struct jbuf *b)
{
	char *mem = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&mem, &len);
	if (!f) {
		b->oom = true;
		return;
	}
	stats_write_json(c->stats, f);
	if (fclose(f) != 0) {
		free(mem);
		b->oom = true;
		return;
	}
	jb_lit(b, ",\"endpoints\":");
	jb_raw(b, mem, len);
	free(mem);
}

/* The latest mismatch records, newest first, as the diff log has them. */
static void json_mismatches(struct comparator *c, struct jbuf *b)
{
	jb_lit(b, ",\"mismatches\":[");
	for (unsigned k = 0; k < c->recent_count; k++) {
		const struct jbuf *r = &c->recent[(c->recent_next + CMP_RECENT - 1 - k) % CMP_RECENT];
		if (k)
			jb_lit(b, ",");
		jb_raw(b, r->p, r->len);
	}
	jb_lit(b, "]");
}

/* The server's clock, as records carry it: the dashboard ages records by
 * it, so a browser whose clock is off still says "3s ago". */
static void json_now(struct jbuf *b)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	jb_printf(b, "\"now\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",", tm.tm_year + 1900, tm.tm_mon + 1,
		  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / NS_PER_MSEC));
}

static void json_config(struct comparator *c, struct jbuf *b)
{
	jb_printf(b, "{\"version\":\"%s\",", KAGE_VERSION);
	json_now(b);
	jb_printf(b, "\"uptime_seconds\":%.3f,\"draining\":%s,\"shards\":%u,\"listen\":",
		  uptime_seconds(c), draining(c) ? "true" : "false", c->nshards);
	jb_cstr(b, c->cfg->listen.text);
	jb_lit(b, ",\"backends\":[");
	for (unsigned i = 0; i < c->cfg->nbackends; i++) {
		jb_lit(b, i ? ",{\"name\":" : "{\"name\":");
		jb_cstr(b, c->cfg->backends[i].name);
		jb_printf(b, ",\"role\":\"%s\",\"address\":", role_of(c, i));
		jb_cstr(b, c->cfg->backends[i].addr.text);
		jb_lit(b, "}");
	}
	jb_lit(b, "],");
}

void metrics_write_stats(struct comparator *c, struct jbuf *b)
{
	struct totals t;
	totals_read(c, &t);
	json_config(c, b);
	json_counters(c, &t, b);
	json_latency(c, b);
	json_endpoints(c, b);
	json_mismatches(c, b);
	jb_lit(b, "}\n");
}

/* =============================================================================
 * routes
 * ============================================================================= */

/* The page is self-contained: nothing may load from elsewhere. */
#define DASHBOARD_HEADERS \
	"Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; " \
	"style-src 'unsafe-inline'; connect-src 'self'; img-src data:\r\n" \
	"X-Content-Type-Options: nosniff\r\n"

void metrics_route(void *arg, const char *path, struct admin_reply *r)
{
	struct comparator *c = arg;
	if (!strcmp(path, "/metrics")) {
		r->content_type = "text/plain; version=0.0.4; charset=utf-8";
		metrics_write_prometheus(c, r->body);
	} else if (!strcmp(path, "/stats")) {
		r->content_type = "application/json";
		metrics_write_stats(c, r->body);
	} else if (!strcmp(path, "/healthz")) {
		bool d = draining(c);
		r->status = d ? 503 : 200;
		jb_lit(r->body, d ? "draining\n" : "ok\n");
	} else if (!strcmp(path, "/") || !strcmp(path, "/index.html")) {
		r->content_type = "text/html; charset=utf-8";
		r->headers = DASHBOARD_HEADERS;
		jb_raw(r->body, dashboard_html, dashboard_html_len);
	} else {
		r->status = 404;
		jb_lit(r->body, "not found: try /, /metrics, /stats or /healthz\n");
	}
}
