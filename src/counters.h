#ifndef KAGE_COUNTERS_H
#define KAGE_COUNTERS_H
/*
 * counters: what a shard counts. Each shard owns one struct, on its own
 * cache lines, and is its only writer; other threads (the admin endpoint,
 * the shutdown summary) read it at any time. A single writer needs no
 * read-modify-write: CTR_ADD is a relaxed load and store (a plain add on
 * x86), and readers use relaxed loads, so the counters cost the request
 * path nothing and stay race-free for ThreadSanitizer.
 */
#include <stdatomic.h>
#include <stdint.h>

#include "util.h"

typedef _Atomic uint64_t counter_t;

#define CTR_ADD(c, field, n) \
	atomic_store_explicit(&(c)->field, \
			      atomic_load_explicit(&(c)->field, memory_order_relaxed) + (n), \
			      memory_order_relaxed)
#define CTR_INC(c, field) CTR_ADD(c, field, 1)
#define CTR_GET(c, field) atomic_load_explicit(&(c)->field, memory_order_relaxed)
/* Gauges move both ways; still one writer. */
#define CTR_SET(c, field, v) atomic_store_explicit(&(c)->field, (v), memory_order_relaxed)

/* Why a shadow was not sent, or failed (SPEC section 7). */
enum shadow_reason {
	SKIP_METHOD = 0,
	SKIP_PATH,
	SKIP_SAMPLE,
	SKIP_BODY,		/* request body over --shadow-body-max */
	SKIP_OVERLOAD,		/* --shadow-max-inflight reached */
	SKIP_MEMORY,		/* --shadow-memory exhausted */
	SKIP_QUEUE,		/* the comparator is a full queue behind: not sent */
	SKIP_PLUGIN,		/* a plugin hook failed or answered something invalid */
	SKIP_UPGRADE,		/* Upgrade requests are never shadowed */
	SKIP_CLIENT,		/* the client went away mid-request */
	SKIP_REASONS
};

static inline const char *shadow_reason_name(enum shadow_reason r)
{
	static const char *const names[SKIP_REASONS] = {
		"method", "path", "sample", "body_too_large", "overload", "memory",
		"queue_full", "plugin", "upgrade", "client_gone",
	};
	return names[r];
}

/* How a backend exchange failed. */
enum backend_error {
	BERR_NONE = 0,
	BERR_CONNECT,
	BERR_TIMEOUT,
	BERR_RESET,
	BERR_MALFORMED,
	BERR_DROPPED,
	BERR_KINDS
};

struct backend_counters {
	counter_t requests;		/* requests sent */
	counter_t responses[6];		/* by class: [1]=1xx .. [5]=5xx, [0]=other */
	counter_t errors[BERR_KINDS];	/* connections that failed (a retried one too) */
	counter_t failed[BERR_KINDS];	/* shadow exchanges that ended failed, after any retry */
	counter_t connects;		/* connections opened */
	counter_t reuses;		/* requests sent on a pooled connection */
	counter_t retries;		/* idempotent requests retried after a stale connection */
	counter_t latency_sum_us;
};

struct shard_counters {
	/* clients */
	counter_t accepted;
	counter_t conns_open;		/* gauge */
	counter_t accept_backoffs;	/* max-conns or EMFILE */
	counter_t requests;		/* client requests (heads) */
	counter_t responses[6];		/* to clients, by class */
	counter_t client_errors;	/* 4xx kage generated itself */
	counter_t client_timeouts;
	counter_t upgrades;		/* tunnels opened */

	/* zero-copy accounting for master response bodies */
	counter_t body_bytes_zerocopy;	/* sent from the buffer they arrived in */
	counter_t body_bytes_copied;	/* memcpy'd on the way (should stay 0) */
	counter_t zc_sends;		/* --send-zc: SEND_ZC used */
	counter_t zc_kernel_copied;	/* ... and the kernel copied anyway (loopback) */

	/* shadows */
	counter_t shadow_eligible;
	counter_t shadow_skipped[SKIP_REASONS];
	counter_t shadow_sent;		/* shadow requests sent (one per shadow) */
	counter_t shadow_inflight;	/* gauge: records not yet handed over */
	counter_t records_queued;
	counter_t records_dropped;	/* lost at the hand-over (never, by design) */
	counter_t plugin_errors;	/* a hook returned an error */
	counter_t plugin_rejected;	/* a hook answered something kage refused */

	/* io_uring */
	counter_t enobufs;
	counter_t cq_overflows;
	counter_t sqes;
	counter_t enters;

	struct backend_counters backend[16];
} CACHE_ALIGNED;

#endif
