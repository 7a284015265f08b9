#ifndef KAGE_METRICS_H
#define KAGE_METRICS_H
/*
 * metrics: what the admin listener answers (SPEC section 7). Everything
 * here runs on the comparator thread, which owns the statistics, the
 * diff-log counters and the latest mismatches; the shards' counters are
 * read with relaxed loads and summed (counters.h), the queue depth with
 * spsc_depth(). Nothing here writes anything another thread reads.
 *
 *   /metrics   Prometheus text exposition format 0.0.4
 *   /stats     the same counters as JSON, the latency histograms, the
 *              per-endpoint statistics (SPEC section 5) and the latest
 *              mismatch records: what the dashboard draws
 *   /healthz   200 "ok" while serving, 503 "draining" once SIGTERM came
 *   /          the dashboard (dashboard.c)
 *
 * Label cardinality is bounded: comparisons are labelled by endpoint for
 * the METRICS_TOP_ENDPOINTS endpoints with the most requests; the rest add
 * up under endpoint="other".
 */
#include "admin.h"
#include "jbuf.h"

struct comparator;

#define METRICS_TOP_ENDPOINTS 50

/* The admin handler; arg is the struct comparator. */
void metrics_route(void *arg, const char *path, struct admin_reply *reply);

void metrics_write_prometheus(struct comparator *c, struct jbuf *b);
void metrics_write_stats(struct comparator *c, struct jbuf *b);

#endif
