/*
 * The shard allocators (src/pool.h): the byte pool's classes, budget and
 * trim; the object pool's recycling. Run under ASan in CI, which would see
 * a buffer freed twice or used after a trim.
 */
#include <CUnit/Basic.h>
#include <stdint.h>
#include <string.h>

#include "pool.h"

#define KIB 1024u

/* held must always be what is handed out plus what is cached. */
static size_t cached_bytes(const struct bytepool *p)
{
	size_t n = 0;
	for (int c = 0; c < BYTEPOOL_CLASSES; c++)
		n += p->nfree[c] << (c + BYTEPOOL_MIN_SHIFT);
	return n;
}

static void check_accounting(const struct bytepool *p)
{
	CU_ASSERT_EQUAL(p->held, p->out + cached_bytes(p));
}

static void test_classes_and_budget(void)
{
	struct bytepool p;
	bytepool_init(&p, 64 * KIB);
	size_t cap;
	void *a = bytepool_get(&p, 1, &cap);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_EQUAL(cap, 256);
	void *b = bytepool_get(&p, 257, &cap);
	CU_ASSERT_EQUAL(cap, 512);
	void *c = bytepool_get(&p, 60 * KIB, &cap);
	CU_ASSERT_PTR_NULL(c); /* 64 KiB class + 768 B held > 64 KiB budget */
	CU_ASSERT_EQUAL(p.refused, 1);
	bytepool_put(&p, a, 256);
	bytepool_put(&p, b, 512);
	check_accounting(&p);
	/* Over budget, the cache of other classes is shed first. */
	c = bytepool_get(&p, 63 * KIB, &cap);
	CU_ASSERT_PTR_NOT_NULL(c);
	CU_ASSERT_EQUAL(cap, 64 * KIB);
	CU_ASSERT_EQUAL(p.held, 64 * KIB);
	check_accounting(&p);
	bytepool_put(&p, c, cap);
	CU_ASSERT_PTR_NULL(bytepool_get(&p, ((size_t)64 << 20) + 1, &cap));
	bytepool_destroy(&p);
}

/* A steady load cycling a few buffers keeps them all through any trim. */
static void test_trim_keeps_a_steady_load(void)
{
	struct bytepool p;
	bytepool_init(&p, 1 << 20);
	for (int round = 0; round < 5; round++) {
		for (int k = 0; k < 50; k++) {
			size_t cap[4];
			void *b[4];
			for (int i = 0; i < 4; i++)
				b[i] = bytepool_get(&p, KIB, &cap[i]);
			for (int i = 0; i < 4; i++)
				bytepool_put(&p, b[i], cap[i]);
		}
		CU_ASSERT_EQUAL(bytepool_trim(&p), 0);
		CU_ASSERT_EQUAL(p.held, 4 * KIB);
		check_accounting(&p);
	}
	bytepool_destroy(&p);
}

/* After a burst, what the next interval does not use goes back, coldest
 * first; the buffers in use stay the warm ones. */
static void test_trim_releases_a_burst(void)
{
	struct bytepool p;
	bytepool_init(&p, 8 << 20);
	enum { BURST = 100 };
	void *b[BURST];
	size_t cap;
	for (int i = 0; i < BURST; i++)
		CU_ASSERT_PTR_NOT_NULL_FATAL(b[i] = bytepool_get(&p, 4 * KIB, &cap));
	for (int i = 0; i < BURST; i++)
		bytepool_put(&p, b[i], cap);
	CU_ASSERT_EQUAL(p.held, BURST * 4 * KIB);
	/* The burst's interval used every buffer: nothing is cold yet. */
	CU_ASSERT_EQUAL(bytepool_trim(&p), 0);

	/* The next interval needs 4 at a time. */
	void *warm[4];
	for (int k = 0; k < 10; k++) {
		for (int i = 0; i < 4; i++)
			warm[i] = bytepool_get(&p, 4 * KIB, &cap);
		for (int i = 3; i >= 0; i--)
			bytepool_put(&p, warm[i], cap);
	}
	CU_ASSERT_EQUAL(bytepool_trim(&p), (BURST - 4) * 4 * KIB);
	CU_ASSERT_EQUAL(p.held, 4 * 4 * KIB);
	CU_ASSERT_EQUAL(p.nfree[4], 4); /* 4 KiB is class 4 (256 B << 4) */
	check_accounting(&p);
	/* The 4 kept are the 4 just used. */
	void *again[4];
	for (int i = 0; i < 4; i++) {
		again[i] = bytepool_get(&p, 4 * KIB, &cap);
		CU_ASSERT_PTR_EQUAL(again[i], warm[i]);
	}
	for (int i = 0; i < 4; i++)
		bytepool_put(&p, again[i], cap);
	/* An interval with no use at all releases the rest. */
	CU_ASSERT_EQUAL(bytepool_trim(&p), 0); /* they were just taken */
	CU_ASSERT_EQUAL(bytepool_trim(&p), 4 * 4 * KIB);
	CU_ASSERT_EQUAL(p.held, 0);
	check_accounting(&p);
	bytepool_destroy(&p);
}

/* Buffers handed out are never touched by a trim; shedding for the budget
 * keeps the counts right. */
static void test_trim_with_buffers_out_and_shedding(void)
{
	struct bytepool p;
	bytepool_init(&p, 200 * KIB);
	size_t cap;
	void *out[8];
	for (int i = 0; i < 8; i++) {
		out[i] = bytepool_get(&p, 16 * KIB, &cap);
		memset(out[i], 0xab, cap);
	}
	for (int i = 0; i < 4; i++)
		bytepool_put(&p, out[i], cap);
	CU_ASSERT_EQUAL(bytepool_trim(&p), 0);
	/* A big request sheds the cached 16 KiB buffers (other class). */
	void *big = bytepool_get(&p, 128 * KIB, &cap);
	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	CU_ASSERT_EQUAL(p.nfree[6], 0); /* 16 KiB: class 6 */
	check_accounting(&p);
	CU_ASSERT_EQUAL(bytepool_trim(&p), 0);
	bytepool_put(&p, big, cap);
	CU_ASSERT_EQUAL(bytepool_trim(&p), 0);
	CU_ASSERT_EQUAL(bytepool_trim(&p), 128 * KIB);
	for (int i = 4; i < 8; i++) {
		const unsigned char *u = out[i];
		CU_ASSERT(u[0] == 0xab && u[16 * KIB - 1] == 0xab);
		bytepool_put(&p, out[i], 16 * KIB);
	}
	check_accounting(&p);
	bytepool_destroy(&p);
}

static void test_objpool_recycles_lifo_zeroed(void)
{
	struct objpool p;
	objpool_init(&p, 40, 4);
	CU_ASSERT_EQUAL(p.size, 48);
	unsigned char *o[10];
	for (int i = 0; i < 10; i++) {
		o[i] = objpool_get(&p);
		CU_ASSERT_PTR_NOT_NULL_FATAL(o[i]);
		memset(o[i], 0xcd, 40);
	}
	CU_ASSERT_EQUAL(p.live, 10);
	CU_ASSERT_EQUAL(p.total, 12);
	objpool_put(&p, o[3]);
	objpool_put(&p, o[7]);
	unsigned char *a = objpool_get(&p);
	CU_ASSERT_PTR_EQUAL(a, o[7]);
	CU_ASSERT(a[0] == 0 && a[39] == 0);
	CU_ASSERT_EQUAL(p.live, 9);
	objpool_destroy(&p);
}

int main(void)
{
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	CU_pSuite s = CU_add_suite("pool", NULL, NULL);
	CU_add_test(s, "byte classes and budget", test_classes_and_budget);
	CU_add_test(s, "trim keeps a steady load", test_trim_keeps_a_steady_load);
	CU_add_test(s, "trim releases a burst", test_trim_releases_a_burst);
	CU_add_test(s, "trim with buffers out and shedding", test_trim_with_buffers_out_and_shedding);
	CU_add_test(s, "objpool recycles LIFO, zeroed", test_objpool_recycles_lifo_zeroed);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	unsigned failed = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
