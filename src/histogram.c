/*
 * histogram: see histogram.h. The bucket index is the value's top six
 * significant bits (an implicit leading one and five more) and its
 * exponent, so the index costs one count-leading-zeros.
 */
#include "histogram.h"

#include <stdlib.h>
#include <string.h>

#define SUB	(1u << HISTOGRAM_SUB_BITS)		/* buckets per power of two */
#define LINEAR	(2u * SUB)				/* exact below this */
#define VMAX	((UINT64_C(1) << HISTOGRAM_MAX_BITS) - 1)

struct histogram *histogram_new(void)
{
	struct histogram *h = malloc(sizeof(*h));
	if (h)
		histogram_clear(h);
	return h;
}

void histogram_clear(struct histogram *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

size_t histogram_bucket_index(uint64_t v)
{
	if (v > VMAX)
		v = VMAX;
	if (v < LINEAR)
		return (size_t)v;
	unsigned e = (unsigned)(63 - __builtin_clzll(v)) - HISTOGRAM_SUB_BITS;
	return (size_t)(e + 1) * SUB + (size_t)(v >> e) - SUB;
}

void histogram_bucket_bounds(size_t i, uint64_t *lo, uint64_t *hi)
{
	if (i < LINEAR) {
		*lo = i;
		*hi = i + 1;
		return;
	}
	unsigned e = (unsigned)(i / SUB) - 1;
	uint64_t j = i % SUB + SUB;
	*lo = j << e;
	*hi = (j + 1) << e;
}

void histogram_record(struct histogram *h, uint64_t v)
{
	h->buckets[histogram_bucket_index(v)]++;
	h->count++;
	h->sum = h->sum + v < h->sum ? UINT64_MAX : h->sum + v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void histogram_merge(struct histogram *dst, const struct histogram *src)
{
	if (!src->count)
		return;
	for (size_t i = 0; i < HISTOGRAM_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
	dst->count += src->count;
	dst->sum = dst->sum + src->sum < dst->sum ? UINT64_MAX : dst->sum + src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t histogram_percentile(const struct histogram *h, double p)
{
	uint64_t lo, hi, v;

	if (!h->count)
		return 0;
	if (p <= 0)
		return h->min;
	if (p >= 100)
		return h->max;
	double r = p / 100.0 * (double)h->count;
	uint64_t rank = (uint64_t)r;
	if ((double)rank < r)
		rank++;
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	size_t i = 0;
	for (; i < HISTOGRAM_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank)
			break;
	}
	histogram_bucket_bounds(i, &lo, &hi);
	v = lo + (hi - lo) / 2;
	if (v < h->min)
		v = h->min;
	if (v > h->max)
		v = h->max;
	return v;
}

bool histogram_next(const struct histogram *h, size_t *i, uint64_t *lo, uint64_t *hi, uint64_t *count)
{
	while (*i < HISTOGRAM_BUCKETS && !h->buckets[*i])
		(*i)++;
	if (*i >= HISTOGRAM_BUCKETS)
		return false;
	histogram_bucket_bounds(*i, lo, hi);
	*count = h->buckets[*i];
	(*i)++;
	return true;
}

uint64_t histogram_count_le(const struct histogram *h, uint64_t v)
{
	uint64_t n = 0, lo, hi;

	for (size_t i = 0; i < HISTOGRAM_BUCKETS; i++) {
		histogram_bucket_bounds(i, &lo, &hi);
		if (hi - 1 > v)
			break;
		n += h->buckets[i];
	}
	return n;
}
