#include "outq.h"

#include <string.h>

#include "shadow.h"
#include "shard.h"

static struct outblk *new_block(struct shard *sh, struct outq *q)
{
	struct outblk *b = objpool_get(&sh->outblk_pool);
	if (!b)
		return NULL;
	if (q->tail)
		q->tail->next = b;
	else
		q->head = b;
	q->tail = b;
	return b;
}

/* The block new segments go to: the tail, unless it is sealed or full. */
static struct outblk *open_block(struct shard *sh, struct outq *q, bool need_ref)
{
	struct outblk *b = q->tail;
	bool sealed = b && q->sending && b == q->head;
	if (!b || sealed || b->niov == OUTQ_IOV || (need_ref && b->nref == OUTQ_IOV))
		b = new_block(sh, q);
	return b;
}

static void drop_ref(struct shard *sh, struct outref *r)
{
	switch (r->kind) {
	case REF_PBUF:
		shard_buf_drop(sh, r->arg);
		break;
	case REF_BYTES:
		bytepool_put(&sh->bytes, r->ptr, r->arg);
		break;
	case REF_RECORD:
		shadow_io_done(sh, r->ptr);
		break;
	default:
		break;
	}
}

static bool add_iov(struct outblk *b, struct outq *q, const void *p, size_t len)
{
	struct iovec *last = b->niov ? &b->iov[b->niov - 1] : NULL;
	/* Adjacent bytes of one buffer (a body split only by our own parsing)
	 * go out as one iovec. */
	if (last && (const char *)last->iov_base + last->iov_len == (const char *)p) {
		last->iov_len += len;
	} else {
		b->iov[b->niov].iov_base = (void *)p;
		b->iov[b->niov].iov_len = len;
		b->niov++;
	}
	b->bytes += (uint32_t)len;
	q->bytes += len;
	return true;
}

bool outq_ref(struct shard *sh, struct outq *q, const void *p, size_t len, struct outref ref)
{
	struct outblk *b = open_block(sh, q, ref.kind != REF_NONE);
	if (!b) {
		drop_ref(sh, &ref);
		return false;
	}
	if (ref.kind != REF_NONE)
		b->ref[b->nref++] = ref;
	if (len)
		add_iov(b, q, p, len);
	return true;
}

bool outq_static(struct shard *sh, struct outq *q, const void *p, size_t len)
{
	struct outref none = { .kind = REF_NONE };
	return outq_ref(sh, q, p, len, none);
}

bool outq_copy(struct shard *sh, struct outq *q, const void *p, size_t len)
{
	struct outblk *b = open_block(sh, q, false);
	if (!b)
		return false;
	if (b->scratch_used + len <= OUTQ_SCRATCH) {
		char *dst = b->scratch + b->scratch_used;
		memcpy(dst, p, len);
		b->scratch_used += (uint16_t)len;
		return add_iov(b, q, dst, len);
	}
	size_t cap;
	char *buf = bytepool_get(&sh->bytes, len, &cap);
	if (!buf)
		return false;
	memcpy(buf, p, len);
	struct outref ref = { .ptr = buf, .arg = (uint32_t)cap, .kind = REF_BYTES };
	return outq_ref(sh, q, buf, len, ref);
}

struct msghdr *outq_next(struct outq *q)
{
	struct outblk *b = q->head;
	if (q->sending || !b)
		return NULL;
	/* A block whose segments were all empty (only references) is done. */
	memset(&b->msg, 0, sizeof b->msg);
	b->msg.msg_iov = b->iov;
	b->msg.msg_iovlen = b->niov;
	q->sending = true;
	return &b->msg;
}

static void free_block(struct shard *sh, struct outblk *b)
{
	for (unsigned i = 0; i < b->nref; i++)
		drop_ref(sh, &b->ref[i]);
	objpool_put(&sh->outblk_pool, b);
}

/* The send in flight completed: take its block off the queue. */
static struct outblk *pop_sent(struct outq *q, int res, bool *whole)
{
	struct outblk *b = q->head;
	q->sending = false;
	if (!b) {
		*whole = res >= 0;
		return NULL;
	}
	*whole = res >= 0 && (uint32_t)res == b->bytes;
	q->bytes -= b->bytes;
	q->head = b->next;
	if (!q->head)
		q->tail = NULL;
	b->next = NULL;
	return b;
}

bool outq_sent(struct shard *sh, struct outq *q, int res)
{
	bool whole;
	struct outblk *b = pop_sent(q, res, &whole);
	if (b)
		free_block(sh, b);
	return whole;
}

bool outq_sent_zc(struct shard *sh, struct outq *q, int res)
{
	bool whole;
	struct outblk *b = pop_sent(q, res, &whole);
	if (!b)
		return whole;
	if (q->zc_last)
		q->zc_last->next = b;
	else
		q->zc_wait = b;
	q->zc_last = b;
	return whole;
}

/* Notifications come in the order the sends were made. */
void outq_zc_notified(struct shard *sh, struct outq *q)
{
	struct outblk *b = q->zc_wait;
	if (!b)
		return;
	q->zc_wait = b->next;
	if (!q->zc_wait)
		q->zc_last = NULL;
	free_block(sh, b);
}

uint32_t outq_next_bytes(const struct outq *q)
{
	return q->head && !q->sending ? q->head->bytes : 0;
}

/*
 * The block in flight stays until its completion arrives: its buffers may
 * not be recycled while the kernel can still read them (a recycled
 * buffer refilled with another client's bytes would leak them here).
 */
void outq_clear(struct shard *sh, struct outq *q)
{
	struct outblk *keep = q->sending ? q->head : NULL;
	struct outblk *b = keep ? keep->next : q->head;
	while (b) {
		struct outblk *next = b->next;
		free_block(sh, b);
		b = next;
	}
	q->head = q->tail = keep;
	if (keep)
		keep->next = NULL;
	q->bytes = keep ? keep->bytes : 0;
}
