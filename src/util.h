#ifndef KAGE_UTIL_H
#define KAGE_UTIL_H
/*
 * util: the few macros every module uses. Nothing here allocates or does I/O.
 */
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Keep data written by different threads on different cache lines. */
#define CACHELINE 64
#define CACHE_ALIGNED __attribute__((aligned(CACHELINE)))

#define NS_PER_SEC  1000000000LL
#define NS_PER_MSEC 1000000LL

/* Monotonic nanoseconds (vDSO, no syscall). */
static inline int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static inline int64_t sec_to_ns(double s)
{
	return (int64_t)(s * (double)NS_PER_SEC);
}

/* ASCII case-insensitive compare of n bytes (HTTP names are ASCII). */
static inline int ascii_casecmp(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
		if (x >= 'A' && x <= 'Z')
			x += 32;
		if (y >= 'A' && y <= 'Z')
			y += 32;
		if (x != y)
			return x - y;
	}
	return 0;
}

/* Does the span [s, s+n) equal the NUL-terminated lowercase word w, ignoring case? */
static inline int span_is(const char *s, size_t n, const char *w)
{
	size_t i = 0;
	for (; i < n && w[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 'A' && c <= 'Z')
			c += 32;
		if (c != (unsigned char)w[i])
			return 0;
	}
	return i == n && w[i] == '\0';
}

/* Decimal digits of v into buf (no NUL); returns the count. No printf
 * on the request path. */
static inline size_t fmt_dec(char *buf, uint64_t v)
{
	char tmp[20];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	return n;
}

/* Lowercase hex digits of v (a chunk size) into buf (no NUL). */
static inline size_t fmt_hex(char *buf, uint64_t v)
{
	static const char digits[] = "0123456789abcdef";
	char tmp[16];
	size_t n = 0;
	do {
		tmp[n++] = digits[v & 15];
		v >>= 4;
	} while (v);
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	return n;
}

#endif
