#include "timer.h"

#include <stddef.h>
#include <string.h>

void timers_init(struct timers *ts)
{
	memset(ts, 0, sizeof *ts);
}

int timers_queue(struct timers *ts, int64_t duration_ns)
{
	for (unsigned i = 0; i < ts->n; i++)
		if (ts->q[i].duration == duration_ns)
			return (int)i;
	if (ts->n == TIMER_QUEUES)
		return -1;
	struct timer_queue *q = &ts->q[ts->n];
	q->duration = duration_ns;
	q->head.prev = q->head.next = &q->head;
	return (int)ts->n++;
}

void timer_stop(struct timer *t)
{
	if (!t->next)
		return;
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->prev = t->next = NULL;
}

void timer_start(struct timers *ts, struct timer *t, int q, int64_t now, timer_fn fire)
{
	struct timer_queue *tq = &ts->q[q];
	timer_stop(t);
	t->deadline = now + tq->duration;
	t->fire = fire;
	t->prev = tq->head.prev;
	t->next = &tq->head;
	tq->head.prev->next = t;
	tq->head.prev = t;
}

int64_t timers_next(const struct timers *ts, int64_t now)
{
	int64_t best = -1;
	for (unsigned i = 0; i < ts->n; i++) {
		const struct timer_queue *q = &ts->q[i];
		if (q->head.next == &q->head)
			continue;
		int64_t d = q->head.next->deadline - now;
		if (d < 0)
			d = 0;
		if (best < 0 || d < best)
			best = d;
	}
	return best;
}

unsigned timers_run(struct timers *ts, int64_t now, void *ctx)
{
	unsigned fired = 0;
	for (unsigned i = 0; i < ts->n; i++) {
		struct timer_queue *q = &ts->q[i];
		/* A fire function may start or stop other timers, even on this
		 * queue; take the head afresh each time. */
		while (q->head.next != &q->head && q->head.next->deadline <= now) {
			struct timer *t = q->head.next;
			timer_stop(t);
			t->fire(t, ctx);
			fired++;
		}
	}
	return fired;
}
