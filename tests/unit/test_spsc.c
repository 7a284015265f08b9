/*
 * The shard-to-comparator queue: single-threaded semantics, then a stress
 * run shaped like kage's use of it (several producers, one consumer, every
 * object sent back through a return queue and reused). Run under TSan in
 * CI; see SPSC_BROKEN in spsc.h for the canary build that must fail there.
 */
#include <CUnit/Basic.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "spsc.h"

static void test_fifo_and_bounds(void)
{
	struct spsc q;
	CU_ASSERT_EQUAL_FATAL(spsc_init(&q, 8), 0);
	CU_ASSERT_PTR_NULL(spsc_pop(&q));
	CU_ASSERT_TRUE(spsc_empty_sc(&q));
	uintptr_t i;
	for (i = 1; i <= 8; i++)
		CU_ASSERT_TRUE(spsc_push(&q, (void *)i));
	CU_ASSERT_FALSE(spsc_push(&q, (void *)99));	/* full: refused, not blocked */
	CU_ASSERT_EQUAL(spsc_depth(&q), 8);
	CU_ASSERT_FALSE(spsc_empty_sc(&q));
	for (i = 1; i <= 8; i++)
		CU_ASSERT_EQUAL((uintptr_t)spsc_pop(&q), i);
	CU_ASSERT_PTR_NULL(spsc_pop(&q));
	/* Wrap around many times. */
	for (i = 1; i <= 1000; i++) {
		CU_ASSERT_TRUE(spsc_push(&q, (void *)i));
		if (i % 3 == 0)
			CU_ASSERT_TRUE(spsc_push(&q, (void *)(i + 100000)));
		CU_ASSERT_EQUAL((uintptr_t)spsc_pop(&q), i);
		if (i % 3 == 0)
			CU_ASSERT_EQUAL((uintptr_t)spsc_pop(&q), i + 100000);
	}
	spsc_destroy(&q);
}

#define PRODUCERS 4
#define ITEMS 200000
#define POOL 256

struct item {
	unsigned producer;
	uint64_t seq;
	uint64_t check;		/* written before the push, checked after the pop */
	char payload[40];
};

struct lane {
	struct spsc out, back;
	struct item items[POOL];
	unsigned id;
	_Atomic int done;
};

static struct lane lanes[PRODUCERS];
static _Atomic uint64_t failures;

static uint64_t checksum(const struct item *it)
{
	uint64_t h = it->seq * 0x9e3779b97f4a7c15ULL ^ it->producer;
	for (size_t i = 0; i < sizeof it->payload; i++)
		h = (h ^ (unsigned char)it->payload[i]) * 0x100000001b3ULL;
	return h;
}

static void *producer(void *arg)
{
	struct lane *l = arg;
	struct item *free_list[POOL];
	unsigned nfree = POOL;
	for (unsigned i = 0; i < POOL; i++)
		free_list[i] = &l->items[i];
	for (uint64_t seq = 0; seq < ITEMS;) {
		struct item *back;
		while ((back = spsc_pop(&l->back)))
			free_list[nfree++] = back;
		if (!nfree) {
			sched_yield();
			continue;
		}
		struct item *it = free_list[--nfree];
		it->producer = l->id;
		it->seq = seq;
		for (size_t i = 0; i < sizeof it->payload; i++)
			it->payload[i] = (char)(seq + i);
		it->check = checksum(it);
		if (!spsc_push(&l->out, it)) {
			free_list[nfree++] = it;	/* full: kage would drop; here, retry */
			sched_yield();
			continue;
		}
		seq++;
	}
	atomic_store_explicit(&l->done, 1, memory_order_release);
	return NULL;
}

static void *consumer(void *arg)
{
	uint64_t next[PRODUCERS] = { 0 };
	unsigned finished = 0;
	while (finished < PRODUCERS) {
		finished = 0;
		for (unsigned p = 0; p < PRODUCERS; p++) {
			struct lane *l = &lanes[p];
			struct item *it;
			while ((it = spsc_pop(&l->out))) {
				if (it->producer != p || it->seq != next[p] || it->check != checksum(it))
					atomic_fetch_add(&failures, 1);
				next[p] = it->seq + 1;
				while (!spsc_push(&l->back, it))
					sched_yield();
			}
			if (atomic_load_explicit(&l->done, memory_order_acquire) && next[p] == ITEMS)
				finished++;
		}
	}
	return NULL;
}

static void test_stress(void)
{
	pthread_t prod[PRODUCERS], cons;
	for (unsigned p = 0; p < PRODUCERS; p++) {
		lanes[p].id = p;
		CU_ASSERT_EQUAL_FATAL(spsc_init(&lanes[p].out, 64), 0);
		CU_ASSERT_EQUAL_FATAL(spsc_init(&lanes[p].back, POOL), 0);
	}
	pthread_create(&cons, NULL, consumer, NULL);
	for (unsigned p = 0; p < PRODUCERS; p++)
		pthread_create(&prod[p], NULL, producer, &lanes[p]);
	for (unsigned p = 0; p < PRODUCERS; p++)
		pthread_join(prod[p], NULL);
	pthread_join(cons, NULL);
	CU_ASSERT_EQUAL(atomic_load(&failures), 0);
	for (unsigned p = 0; p < PRODUCERS; p++) {
		spsc_destroy(&lanes[p].out);
		spsc_destroy(&lanes[p].back);
	}
}

int main(void)
{
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	CU_pSuite s = CU_add_suite("spsc", NULL, NULL);
	if (!s || !CU_add_test(s, "FIFO and bounds", test_fifo_and_bounds) ||
	    !CU_add_test(s, "4 producers, return queues, 800k items", test_stress)) {
		CU_cleanup_registry();
		return 1;
	}
	CU_basic_set_mode(CU_BRM_NORMAL);
	CU_basic_run_tests();
	unsigned failed = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failed != 0;
}
