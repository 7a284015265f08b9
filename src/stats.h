#ifndef KAGE_STATS_H
#define KAGE_STATS_H
/*
 * stats: the comparator's statistics per endpoint, backend and place, with
 * Diffy's noise rule (SPEC section 5). Comparator thread only: no locks,
 * nothing here is safe to call from another thread. Other threads (admin
 * /stats, the SIGTERM summary) ask the comparator for a rendering.
 *
 * Counting, per endpoint E (endpoint_of(); past max_endpoints, new ones
 * count under "other"):
 * - requests: records seen for E.
 * - per backend B that took part: compared, matched, mismatched (shadows
 *   only; matched + mismatched == compared), errors (B failed), status
 *   classes, and a latency histogram of B's successful responses.
 *   A shadow matches when every item of its diff is noise; the reference
 *   matches when its diff is empty (its items are noise by definition).
 * - per shadow S and place P (diff_place(); kind and place, array indexes
 *   as '*'): shadow_count n_s = records where S differs from master at P,
 *   noise or not, and reference_count n_r = records where S took part and
 *   the reference differed from master at P. P is reported when
 *   n_s > n_r * (1 + noise_relative) and (n_s - n_r) / requests >
 *   noise_absolute, where requests = S's `compared` for E. For the
 *   reference itself n_r = n_s, so it never reports. Past max_places per
 *   endpoint and backend, new places count under where "(other)" of their
 *   kind.
 *
 * Per record the comparator calls: diff_compare() for each shadow and the
 * reference against master, diff_mark_noise(shadow, reference) for every
 * other shadow, diff_mark_all_noise(reference), then stats_add() once with
 * endpoint_of() of the request.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "diff.h"
#include "histogram.h"

struct stats_config {
	const char *const *backends;	/* names; [0] is the master */
	size_t nbackends;
	int reference;			/* index of the reference shadow, or -1 */
	double noise_relative;		/* --noise-relative (0.20) */
	double noise_absolute;		/* --noise-absolute (0.0003) */
	size_t max_endpoints;		/* 0 means 256 */
	size_t max_places;		/* per endpoint and backend; 0 means 64 */
};

/* One backend's part in one comparison record. */
struct stats_obs {
	bool present;			/* selected for this request */
	int status;			/* 0 when failed */
	bool error;			/* connect, timeout, reset, malformed, dropped */
	int64_t elapsed_ns;
	/* This backend against master, after diff_mark_noise() (shadows);
	 * NULL for the master. A present shadow with NULL counts as matched
	 * unless it failed. */
	const struct diff_result *diff;
};

struct stats_counts {
	uint64_t compared, matched, mismatched, errors;
	uint64_t status_class[6];	/* [0] no status, [1..5] 1xx..5xx */
};

struct stats_place {
	int backend;
	enum diff_kind kind;
	const char *where;		/* valid until the next stats_add() */
	uint64_t shadow_count, reference_count, requests;
	bool reported;
};

/* NULL when out of memory or the config is unusable (no backends). */
struct stats *stats_new(const struct stats_config *cfg);
void stats_free(struct stats *s);

/* One record: `obs` has one entry per backend, in config order. */
void stats_add(struct stats *s, const char *endpoint, const struct stats_obs *obs);

/* The `endpoints` object of /stats (SPEC section 5), no trailing newline. */
void stats_write_json(const struct stats *s, FILE *f);
/* The human summary (SIGTERM, make demo). */
void stats_write_table(const struct stats *s, FILE *f);

/* Readers, for exporters. Endpoint indexes are stable: 0..count-1. */
uint64_t stats_records(const struct stats *s);
size_t stats_endpoint_count(const struct stats *s);
const char *stats_endpoint_name(const struct stats *s, size_t e);
uint64_t stats_endpoint_requests(const struct stats *s, size_t e);
const struct stats_counts *stats_counts(const struct stats *s, size_t e, size_t b);
/* NULL when no latency was recorded. */
const struct histogram *stats_latency(const struct stats *s, size_t e, size_t b);
/* Backend b over every endpoint; NULL when none. */
const struct histogram *stats_backend_latency(const struct stats *s, size_t b);
size_t stats_place_count(const struct stats *s, size_t e, size_t b);
bool stats_place_get(const struct stats *s, size_t e, size_t b, size_t i, struct stats_place *out);

/* Diffy's rule on its own, for tests and exporters. */
bool stats_reported(uint64_t n_s, uint64_t n_r, uint64_t requests, double relative, double absolute);

#endif
