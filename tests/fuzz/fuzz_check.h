#ifndef KAGE_FUZZ_CHECK_H
#define KAGE_FUZZ_CHECK_H
/*
 * What every harness shares: FUZZ_CHECK, an oracle that aborts with the
 * file, line and a message (libFuzzer then keeps the input), and
 * fuzz_known(), the KAGE_FUZZ_KNOWN=name,... switches that let a long run
 * step over a known bug of an older src/ (each harness lists its names).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond, ...)                                                        \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, \
				#cond);                                              \
			fprintf(stderr, __VA_ARGS__);                                \
			fputc('\n', stderr);                                         \
			abort();                                                     \
		}                                                                    \
	} while (0)

static inline bool fuzz_known(const char *name)
{
	const char *k = getenv("KAGE_FUZZ_KNOWN");
	size_t n = strlen(name);
	while (k && *k) {
		const char *e = strchr(k, ',');
		size_t len = e ? (size_t)(e - k) : strlen(k);
		if (len == n && memcmp(k, name, n) == 0)
			return true;
		k = e ? e + 1 : NULL;
	}
	return false;
}

#endif
