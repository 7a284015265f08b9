#ifndef KAGE_HISTOGRAM_H
#define KAGE_HISTOGRAM_H
/*
 * histogram: log-linear buckets of unsigned values (kage records
 * nanoseconds), HDR-style: exact below 64, then 32 buckets per power of
 * two, so a bucket's midpoint is within 1/64 (1.6%) of any value in it.
 * Values from 0 to 2^37 (137 s in ns) are tracked; larger ones land in
 * the last bucket (min, max and sum stay exact). Fixed memory (8.5 KiB),
 * no allocation after histogram_new(), not thread-safe: one writer.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HISTOGRAM_SUB_BITS	5
#define HISTOGRAM_MAX_BITS	37
#define HISTOGRAM_BUCKETS	((HISTOGRAM_MAX_BITS - HISTOGRAM_SUB_BITS + 1) << HISTOGRAM_SUB_BITS)

struct histogram {
	uint64_t count;
	uint64_t sum;			/* saturates at UINT64_MAX */
	uint64_t min, max;		/* exact; min is UINT64_MAX when empty */
	uint64_t buckets[HISTOGRAM_BUCKETS];
};

/* Allocated and cleared; NULL when out of memory. Free with free(). */
struct histogram *histogram_new(void);
void histogram_clear(struct histogram *h);
void histogram_record(struct histogram *h, uint64_t v);
/* dst += src */
void histogram_merge(struct histogram *dst, const struct histogram *src);

/*
 * The value at percentile p (0..100): the midpoint of the bucket holding
 * the ceil(p% * count)-th smallest value, clamped to [min, max]. 0 when
 * empty.
 */
uint64_t histogram_percentile(const struct histogram *h, double p);

/* Buckets, for exporters: bucket i holds values in [lo, hi). */
size_t histogram_bucket_index(uint64_t v);
void histogram_bucket_bounds(size_t i, uint64_t *lo, uint64_t *hi);

/*
 * Iterate the non-empty buckets: start with *i = 0, call until false.
 * Each call yields one bucket's bounds and count and advances *i.
 */
bool histogram_next(const struct histogram *h, size_t *i, uint64_t *lo, uint64_t *hi, uint64_t *count);

/*
 * How many recorded values are <= v, at bucket resolution: buckets that
 * lie wholly at or below v count, the one v falls inside does not unless
 * v is its last value. (Prometheus `le` buckets.)
 */
uint64_t histogram_count_le(const struct histogram *h, uint64_t v);

#endif
