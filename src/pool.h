#ifndef KAGE_POOL_H
#define KAGE_POOL_H
/*
 * pool: the allocators of one shard. After warm-up the request path takes
 * everything it needs from here and gives it back here, so it calls no
 * malloc. Neither pool is thread-safe: each belongs to one thread. Memory
 * handed to another thread (records to the comparator) comes back through
 * the return queue and is put back by the owner.
 *
 * objpool: objects of one size, carved from slabs of `per_slab`, recycled
 * LIFO (the most recently freed object is the warmest in cache). Slabs are
 * never returned to the system before objpool_destroy().
 *
 * bytepool: byte buffers in power-of-two classes from 256 B to 64 MiB, with
 * a budget on the bytes it holds (handed out plus cached). A request that
 * would exceed the budget first drops cached buffers of other classes, then
 * fails: callers treat NULL as "over budget" and degrade (a shadow is
 * dropped and counted; a capture is truncated), never as fatal. Cached
 * buffers that nobody took for a whole interval between two
 * bytepool_trim() calls go back to the system, so a burst's memory does
 * not stay for good while a steady load keeps every buffer it cycles.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct objpool {
	size_t size;		/* object size, rounded up to 16 */
	unsigned per_slab;
	void *free;		/* free list through the first word */
	void *slabs;		/* slab list, for destroy */
	size_t live;		/* objects handed out */
	size_t total;		/* objects carved */
};

void objpool_init(struct objpool *p, size_t size, unsigned per_slab);
/* A zeroed object, or NULL when memory is exhausted. */
void *objpool_get(struct objpool *p);
void objpool_put(struct objpool *p, void *obj);
void objpool_destroy(struct objpool *p);

#define BYTEPOOL_MIN_SHIFT 8	/* 256 B */
#define BYTEPOOL_MAX_SHIFT 26	/* 64 MiB */
#define BYTEPOOL_CLASSES (BYTEPOOL_MAX_SHIFT - BYTEPOOL_MIN_SHIFT + 1)

struct bytepool {
	void *free[BYTEPOOL_CLASSES];
	size_t nfree[BYTEPOOL_CLASSES];	/* buffers cached per class */
	size_t low[BYTEPOOL_CLASSES];	/* fewest cached since the last trim */
	size_t budget;		/* cap on held bytes */
	size_t held;		/* handed out + cached */
	size_t out;		/* handed out */
	uint64_t refused;	/* requests refused for the budget */
};

void bytepool_init(struct bytepool *p, size_t budget);
/*
 * A buffer of at least `want` bytes (not zeroed); its real capacity in
 * *cap. NULL when `want` exceeds the largest class or the budget.
 */
void *bytepool_get(struct bytepool *p, size_t want, size_t *cap);
/* Give back a buffer of capacity `cap` as returned by bytepool_get. */
void bytepool_put(struct bytepool *p, void *buf, size_t cap);
/*
 * Free the cached buffers that sat unused since the previous call: per
 * class, as many as the cache never went below (the coldest ones, at the
 * tail of the LIFO list). Returns the bytes freed. Meant for a slow timer
 * (the shards call it every POOL_TRIM_S seconds), never the request path.
 */
size_t bytepool_trim(struct bytepool *p);
void bytepool_destroy(struct bytepool *p);

#endif
