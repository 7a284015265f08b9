#include "pool.h"

#include <stdlib.h>
#include <string.h>

/* --- objpool --------------------------------------------------------------- */

struct slab {
	struct slab *next;
	/* objects follow, 16-byte aligned */
};

#define SLAB_HEAD ((sizeof(struct slab) + 15) & ~(size_t)15)

void objpool_init(struct objpool *p, size_t size, unsigned per_slab)
{
	memset(p, 0, sizeof *p);
	p->size = ((size > sizeof(void *) ? size : sizeof(void *)) + 15) & ~(size_t)15;
	p->per_slab = per_slab ? per_slab : 64;
}

static int add_slab(struct objpool *p)
{
	/* aligned_alloc: user_data packs an operation tag in the low bits. */
	size_t bytes = SLAB_HEAD + p->size * p->per_slab;
	struct slab *s = aligned_alloc(16, (bytes + 15) & ~(size_t)15);
	if (!s)
		return -1;
	s->next = p->slabs;
	p->slabs = s;
	char *obj = (char *)s + SLAB_HEAD;
	for (unsigned i = 0; i < p->per_slab; i++) {
		*(void **)(obj + i * p->size) = p->free;
		p->free = obj + i * p->size;
	}
	p->total += p->per_slab;
	return 0;
}

void *objpool_get(struct objpool *p)
{
	if (!p->free && add_slab(p) < 0)
		return NULL;
	void *obj = p->free;
	p->free = *(void **)obj;
	p->live++;
	memset(obj, 0, p->size);
	return obj;
}

void objpool_put(struct objpool *p, void *obj)
{
	*(void **)obj = p->free;
	p->free = obj;
	p->live--;
}

void objpool_destroy(struct objpool *p)
{
	struct slab *s = p->slabs;
	while (s) {
		struct slab *next = s->next;
		free(s);
		s = next;
	}
	memset(p, 0, sizeof *p);
}

/* --- bytepool -------------------------------------------------------------- */

static int class_of(size_t want)
{
	int shift = BYTEPOOL_MIN_SHIFT;
	while (((size_t)1 << shift) < want) {
		if (++shift > BYTEPOOL_MAX_SHIFT)
			return -1;
	}
	return shift - BYTEPOOL_MIN_SHIFT;
}

static size_t class_size(int c)
{
	return (size_t)1 << (c + BYTEPOOL_MIN_SHIFT);
}

void bytepool_init(struct bytepool *p, size_t budget)
{
	memset(p, 0, sizeof *p);
	p->budget = budget;
}

/* One buffer of class c left the cache: keep the low-water mark. */
static void take_cached(struct bytepool *p, int c)
{
	p->nfree[c]--;
	if (p->nfree[c] < p->low[c])
		p->low[c] = p->nfree[c];
}

/* Free cached buffers of other classes until `need` more bytes fit. */
static void shed_cache(struct bytepool *p, size_t need, int keep)
{
	for (int c = BYTEPOOL_CLASSES - 1; c >= 0 && p->held + need > p->budget; c--) {
		if (c == keep)
			continue;
		while (p->free[c] && p->held + need > p->budget) {
			void *b = p->free[c];
			p->free[c] = *(void **)b;
			free(b);
			p->held -= class_size(c);
			take_cached(p, c);
		}
	}
}

void *bytepool_get(struct bytepool *p, size_t want, size_t *cap)
{
	int c = class_of(want ? want : 1);
	if (c < 0) {
		p->refused++;
		return NULL;
	}
	size_t size = class_size(c);
	void *b = p->free[c];
	if (b) {
		p->free[c] = *(void **)b;
		take_cached(p, c);
	} else {
		if (p->held + size > p->budget)
			shed_cache(p, size, c);
		if (p->held + size > p->budget || !(b = malloc(size))) {
			p->refused++;
			return NULL;
		}
		p->held += size;
	}
	p->out += size;
	*cap = size;
	return b;
}

void bytepool_put(struct bytepool *p, void *buf, size_t cap)
{
	int c = class_of(cap);
	*(void **)buf = p->free[c];
	p->free[c] = buf;
	p->nfree[c]++;
	p->out -= cap;
}

/* Free a chain of cached buffers linked through their first word. */
static void free_chain(void *b)
{
	while (b) {
		void *next = *(void **)b;
		free(b);
		b = next;
	}
}

size_t bytepool_trim(struct bytepool *p)
{
	size_t freed = 0;
	for (int c = 0; c < BYTEPOOL_CLASSES; c++) {
		size_t cold = p->low[c];
		if (cold) {
			/* The first nfree - cold were taken and put back during the
			 * interval (LIFO); the rest were not touched. */
			void **link = &p->free[c];
			for (size_t i = p->nfree[c] - cold; i; i--)
				link = (void **)*link;
			free_chain(*link);
			*link = NULL;
			p->nfree[c] -= cold;
			p->held -= cold * class_size(c);
			freed += cold * class_size(c);
		}
		p->low[c] = p->nfree[c];
	}
	return freed;
}

void bytepool_destroy(struct bytepool *p)
{
	for (int c = 0; c < BYTEPOOL_CLASSES; c++)
		free_chain(p->free[c]);
	memset(p, 0, sizeof *p);
}
