#ifndef KAGE_TIMER_H
#define KAGE_TIMER_H
/*
 * timer: a shard's deadlines. kage has only a handful of distinct timeout
 * durations (client, backend, each shadow's, linger, drain), so instead of
 * a heap or a wheel each duration gets a FIFO queue: a timer (re)started
 * with that duration always goes to the tail, so every queue stays sorted
 * by deadline and its head is its earliest. Start, restart, stop and expiry
 * are all O(1); the next deadline is the minimum over a few heads.
 *
 * A timer is embedded in the object it times and names the function to
 * call when it fires; the owner finds itself with container_of().
 */
#include <stdbool.h>
#include <stdint.h>

#define TIMER_QUEUES 24

struct timer;
/* `ctx` is what timers_run() was given (the shard). */
typedef void (*timer_fn)(struct timer *t, void *ctx);

struct timer {
	struct timer *prev, *next;	/* NULL when not armed */
	int64_t deadline;		/* monotonic ns */
	timer_fn fire;
};

struct timer_queue {
	struct timer head;		/* sentinel of a circular list */
	int64_t duration;		/* ns */
};

struct timers {
	struct timer_queue q[TIMER_QUEUES];
	unsigned n;
};

void timers_init(struct timers *ts);
/* The queue for `duration_ns`, created on first use; -1 when all are taken. */
int timers_queue(struct timers *ts, int64_t duration_ns);

/* Arm (or re-arm) t on queue q: fires at now + that queue's duration. */
void timer_start(struct timers *ts, struct timer *t, int q, int64_t now, timer_fn fire);
void timer_stop(struct timer *t);

static inline bool timer_armed(const struct timer *t)
{
	return t->next != 0;
}

/* Nanoseconds until the earliest deadline (0 if one has passed), or -1 if none. */
int64_t timers_next(const struct timers *ts, int64_t now);
/* Fire every timer whose deadline is <= now; returns how many fired. */
unsigned timers_run(struct timers *ts, int64_t now, void *ctx);

#endif
