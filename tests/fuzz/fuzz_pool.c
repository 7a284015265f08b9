/*
 * The allocators of src/pool.h for the fuzz targets: every buffer is its
 * own malloc of the size asked for, and every put frees it. The real pools
 * cache and round up to powers of two, which would hide from ASan both an
 * overflow into the rounding slack and a use after put. Capacities are
 * still multiples of 16, as the real classes (256 B and up) are: http.c
 * keeps its header index at the end of a buffer and relies on that
 * alignment. The budget is kept, so a parser still meets refusals (the
 * 503 path).
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

void objpool_init(struct objpool *p, size_t size, unsigned per_slab)
{
	memset(p, 0, sizeof *p);
	p->size = size;
	p->per_slab = per_slab;
}

void *objpool_get(struct objpool *p)
{
	void *o = calloc(1, p->size);
	if (o)
		p->live++;
	return o;
}

void objpool_put(struct objpool *p, void *obj)
{
	free(obj);
	p->live--;
}

void objpool_destroy(struct objpool *p)
{
	memset(p, 0, sizeof *p);
}

void bytepool_init(struct bytepool *p, size_t budget)
{
	memset(p, 0, sizeof *p);
	p->budget = budget;
}

void *bytepool_get(struct bytepool *p, size_t want, size_t *cap)
{
	size_t size = want ? (want + 15) & ~(size_t)15 : 16;
	if (size > ((size_t)1 << BYTEPOOL_MAX_SHIFT) || p->held + size > p->budget) {
		p->refused++;
		return NULL;
	}
	void *b = malloc(size);
	if (!b) {
		p->refused++;
		return NULL;
	}
	p->held += size;
	p->out += size;
	*cap = size;
	return b;
}

void bytepool_put(struct bytepool *p, void *buf, size_t cap)
{
	size_t real = malloc_usable_size(buf);
	if (real < cap || cap > p->out) {
		fprintf(stderr, "bytepool_put: capacity %zu does not match the buffer (%zu, out %zu)\n",
			cap, real, p->out);
		abort();
	}
	free(buf);
	p->held -= cap;
	p->out -= cap;
}

void bytepool_destroy(struct bytepool *p)
{
	memset(p, 0, sizeof *p);
}
