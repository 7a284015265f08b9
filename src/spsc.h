#ifndef KAGE_SPSC_H
#define KAGE_SPSC_H
/*
 * spsc: a bounded lock-free queue of pointers between exactly one producer
 * thread and exactly one consumer thread. kage uses two per shard: records
 * from the shard to the comparator, and the same records back once the
 * comparator is done with them (so memory is only ever freed by the
 * thread that allocated it).
 *
 * Memory ordering (C11):
 * - push: write the slot (plain store), then publish `tail` with a
 *   seq_cst store (a release, plus a place in the single total order). The
 *   consumer's acquire load of `tail` therefore sees the slot's contents and
 *   everything the producer wrote to the object the pointer names before
 *   pushing it. seq_cst (not just release) because the producer then reads
 *   the consumer's "sleeping" flag (seq_cst) and the consumer, after setting
 *   that flag (seq_cst), re-reads `tail` with spsc_empty_sc(): in the total
 *   order one of them must see the other, so a wake-up is never lost.
 * - pop: load-acquire `tail`, read the slot, then store-release `head`.
 *   The producer's load-acquire of `head` orders its reuse of that slot
 *   after the consumer's read of it.
 * - Each side keeps a private copy of the other side's index and reloads
 *   it (acquire) only when the queue looks full (producer) or empty
 *   (consumer), so the common case touches no shared cache line but its
 *   own index.
 * - Producer fields and consumer fields live on separate cache lines.
 * No atomic read-modify-write and no standalone fence: ThreadSanitizer
 * checks every ordering here from the accesses themselves.
 *
 * A full queue makes push fail; the caller drops and counts. Never blocks.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

#include "util.h"

/*
 * The canary for the ThreadSanitizer job: built with -DSPSC_BROKEN the
 * publication is relaxed (it still "works" on x86), and TSan must report
 * the race. If it does not, the TSan job is not checking anything.
 */
#ifdef SPSC_BROKEN
#define SPSC_PUBLISH memory_order_relaxed
#else
#define SPSC_PUBLISH memory_order_seq_cst
#endif

struct spsc {
	/* consumer side */
	_Atomic size_t head CACHE_ALIGNED;
	size_t tail_seen;
	/* producer side */
	_Atomic size_t tail CACHE_ALIGNED;
	size_t head_seen;
	/* shared, read-only after init */
	void **slot CACHE_ALIGNED;
	size_t mask;
};

/* capacity: a power of two. Returns -1 when out of memory. */
static inline int spsc_init(struct spsc *q, size_t capacity)
{
	q->slot = calloc(capacity, sizeof *q->slot);
	if (!q->slot)
		return -1;
	q->mask = capacity - 1;
	atomic_init(&q->head, 0);
	atomic_init(&q->tail, 0);
	q->tail_seen = 0;
	q->head_seen = 0;
	return 0;
}

static inline void spsc_destroy(struct spsc *q)
{
	free(q->slot);
	q->slot = NULL;
}

/* Producer only. False when full. */
static inline bool spsc_push(struct spsc *q, void *p)
{
	size_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
	if (t - q->head_seen > q->mask) {
		q->head_seen = atomic_load_explicit(&q->head, memory_order_acquire);
		if (t - q->head_seen > q->mask)
			return false;
	}
	q->slot[t & q->mask] = p;
	atomic_store_explicit(&q->tail, t + 1, SPSC_PUBLISH);
	return true;
}

/* Consumer only. NULL when empty. */
static inline void *spsc_pop(struct spsc *q)
{
	size_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
	if (h == q->tail_seen) {
		q->tail_seen = atomic_load_explicit(&q->tail, memory_order_acquire);
		if (h == q->tail_seen)
			return NULL;
	}
	void *p = q->slot[h & q->mask];
	atomic_store_explicit(&q->head, h + 1, memory_order_release);
	return p;
}

/* Consumer only, after publishing that it is about to sleep (see above). */
static inline bool spsc_empty_sc(struct spsc *q)
{
	size_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
	return atomic_load_explicit(&q->tail, memory_order_seq_cst) == h;
}

/* Any thread: an estimate (exact when both sides are quiet). */
static inline size_t spsc_depth(struct spsc *q)
{
	size_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
	size_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
	return t - h;
}

#endif
