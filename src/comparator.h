#ifndef KAGE_COMPARATOR_H
#define KAGE_COMPARATOR_H
/*
 * comparator: the one thread that turns finished records into
 * comparisons. It owns everything downstream of the handoff: the diff
 * engine's buffers, the endpoint statistics, the diff log and (with a
 * plugin) the backends_finished hook, so none of them needs a lock.
 *
 * It round-robins the shards' record queues, compares master with each
 * shadow, applies the reference's noise rule, writes one JSON line per
 * record (mismatches and errors; every record with --diff-log-all), and
 * gives each record back to its shard. The log is written with write(2)
 * from a buffer flushed whenever the queues run dry and at least every
 * 200 ms while busy, so a record reaches the log within a second even when
 * it is a pipe. A log that cannot be written (full disk, closed pipe)
 * loses records, counted; proxying never notices.
 *
 * Sleeping: with every queue empty it sets `sleeping` (seq_cst), checks the
 * queues once more (seq_cst), and only then waits on its eventfd; a shard
 * that pushed a record and then sees `sleeping` writes the eventfd through
 * its ring (see spsc.h for why no wake-up is lost). While records flow it
 * does not sleep that way: when the queues run dry it naps BUSY_NAP_MS
 * without `sleeping` set, so the shards ask no wake-up, and takes what
 * came meanwhile as one batch; only a nap that finds nothing leads to the
 * eventfd sleep.
 *
 * With --admin, the admin listener and its connections (admin.c) share
 * that poll(): while idle the comparator sleeps on all of them at once;
 * while records flow it polls them without waiting at most every
 * ADMIN_POLL_NS between batches, so a scrape is answered within
 * milliseconds under load and costs the records no more than one poll(2)
 * per interval. The admin is answered here, not on a shard, because this
 * thread owns the statistics it renders.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "diff.h"
#include "jbuf.h"

struct admin;
struct server;
struct shard;
struct stats;
struct plugin;
struct hook_scratch;

/* Mismatch records kept for the dashboard (/stats "mismatches"). */
#define CMP_RECENT		20
/* A line longer than this (a large request body) is not kept. */
#define CMP_RECENT_MAX		(256 * 1024)

struct comparator_counters {
	_Atomic uint64_t records;	/* compared */
	_Atomic uint64_t batches;	/* wake-ups (or naps) that found records */
	_Atomic uint64_t matched;
	_Atomic uint64_t mismatched;
	_Atomic uint64_t logged;	/* lines written */
	_Atomic uint64_t lost;		/* lines the log could not take */
	_Atomic uint64_t abandoned;	/* not compared: left at the drain deadline */
	_Atomic uint64_t backend_matched[KAGE_MAX_BACKENDS];
	_Atomic uint64_t backend_mismatched[KAGE_MAX_BACKENDS];
	_Atomic uint64_t backend_errors[KAGE_MAX_BACKENDS];
};

struct comparator {
	const struct kage_config *cfg;
	struct shard *shards;
	unsigned nshards;
	pthread_t thread;
	bool started;
	int wake_fd;
	_Atomic int sleeping;
	_Atomic int stop;		/* shards are gone: drain and exit */
	_Atomic int64_t deadline_ns;	/* monotonic; past it records are abandoned
					 * uncompared (0: none) */

	int log_fd;			/* diff log */
	bool log_broken;		/* a write failed for good (EPIPE): stop trying */
	struct jbuf out;		/* lines not yet written */
	size_t out_records;		/* records in `out` */
	int64_t last_flush;

	const struct plugin *plugin;	/* backends_finished, or NULL */
	struct hook_scratch *hs;		/* the record view it is given */

	struct diff_options dopt;
	struct diff_result *res[KAGE_MAX_BACKENDS];
	struct stats *stats;
	struct jbuf line;		/* scratch for one record */

	struct comparator_counters ctr;

	/* --admin (NULL when off): served from this thread's poll loop. */
	struct admin *admin;
	struct server *srv;		/* draining state, for /healthz */
	int64_t started_ns;		/* monotonic: uptime */
	int64_t started_wall_ns;	/* realtime: process start, for the metrics */
	int64_t last_admin_poll;

	/* The latest mismatch lines, newest at recent[(recent_next - 1) % CMP_RECENT];
	 * comparator thread only (rendered by /stats on this thread). */
	struct jbuf recent[CMP_RECENT];
	unsigned recent_next;
	unsigned recent_count;
};

int comparator_init(struct comparator *c, const struct kage_config *cfg, struct shard *shards,
		    unsigned nshards, int log_fd, const struct plugin *plugin);
/* Serve `admin` from the comparator thread (call before comparator_start). */
void comparator_serve_admin(struct comparator *c, struct admin *admin, struct server *srv);
int comparator_start(struct comparator *c);
/*
 * Draining: records still queued at `mono_ns` (now_ns() clock) are returned
 * uncompared and counted as abandoned, so a comparator behind (a slow hook)
 * cannot hold kage past --drain-timeout.
 */
void comparator_set_deadline(struct comparator *c, int64_t mono_ns);
/* The shards have exited: process what is left (up to the deadline), flush, join. */
void comparator_finish(struct comparator *c);
void comparator_destroy(struct comparator *c);

/* The per-endpoint summary table (after comparator_finish). */
void comparator_summary(struct comparator *c, FILE *out);

static inline bool comparator_sleeping(struct comparator *c)
{
	return atomic_load_explicit(&c->sleeping, memory_order_seq_cst) != 0;
}

static inline int comparator_wake_fd(const struct comparator *c)
{
	return c->wake_fd;
}

#endif
