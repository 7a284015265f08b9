#ifndef KAGE_OUTQ_H
#define KAGE_OUTQ_H
/*
 * outq: what one socket still has to send, in order, without copying the
 * bytes that are already in memory. Segments point into provided receive
 * buffers (body bytes: zero-copy), into pooled byte buffers (rewritten
 * heads), at static text (error responses, CRLFs), or into a small scratch
 * area for the few bytes kage generates per message (chunk-size lines).
 * Each pooled reference is dropped when the send that carried it completes.
 *
 * Only one send per socket is ever in flight: io_uring may complete two
 * sends to one socket out of order once the first has to wait. Segments
 * are gathered into blocks of up to OUTQ_IOV iovecs; a block in flight is
 * sealed (the kernel may still read its iovec array), so new segments go
 * to a fresh block, sent as one sendmsg when the current one completes.
 *
 * Blocks come from the shard's pool and are attached only while there is
 * something to send: an idle connection holds none.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

struct shard;

#define OUTQ_IOV     32
#define OUTQ_SCRATCH 384

enum outref_kind {
	REF_NONE = 0,		/* static or owned elsewhere */
	REF_PBUF,		/* a provided buffer: drop one reference */
	REF_BYTES,		/* a bytepool buffer: give it back */
	REF_RECORD,		/* memory of a shadow record: one fewer send reads it */
};

struct outref {
	void *ptr;
	uint32_t arg;		/* REF_PBUF: buffer ref (group << 16 | bid); REF_BYTES: capacity */
				/* REF_RECORD: ptr is the record */
	uint8_t kind;
};

struct outblk {
	struct outblk *next;
	struct msghdr msg;
	uint16_t niov;
	uint16_t nref;
	uint16_t scratch_used;
	uint32_t bytes;
	struct iovec iov[OUTQ_IOV];
	struct outref ref[OUTQ_IOV];
	char scratch[OUTQ_SCRATCH];
};

struct outq {
	struct outblk *head;	/* head is in flight while `sending` */
	struct outblk *tail;
	struct outblk *zc_wait;	/* sent with SEND_ZC, buffers held until notified */
	struct outblk *zc_last;
	uint64_t bytes;		/* queued and not yet completed */
	bool sending;
};

static inline bool outq_empty(const struct outq *q)
{
	return q->head == NULL;
}

static inline bool outq_pending(const struct outq *q)
{
	/* Something not yet handed to the kernel. */
	return q->head && (!q->sending || q->head->next);
}

/*
 * Append segments. Each returns false only when the shard is out of memory
 * for blocks (the caller closes the connection).
 */
bool outq_ref(struct shard *sh, struct outq *q, const void *p, size_t len, struct outref ref);
bool outq_static(struct shard *sh, struct outq *q, const void *p, size_t len);
bool outq_copy(struct shard *sh, struct outq *q, const void *p, size_t len);

/* Start a send of the head block if none is in flight: fills *msg. */
struct msghdr *outq_next(struct outq *q);
/*
 * The send in flight completed with `res` (bytes, or -errno): drop its
 * references and block. Returns true when everything it carried was sent.
 */
bool outq_sent(struct shard *sh, struct outq *q, int res);
/*
 * A SEND_ZC of the head block completed and the kernel will notify when it
 * no longer reads the buffers: the block leaves the queue (the next send
 * may start) but its references are held until outq_zc_notified().
 */
bool outq_sent_zc(struct shard *sh, struct outq *q, int res);
void outq_zc_notified(struct shard *sh, struct outq *q);
/* Bytes of the block that would be sent next (to choose SEND_ZC or not). */
uint32_t outq_next_bytes(const struct outq *q);
/* Drop everything queued (the socket is going away). */
void outq_clear(struct shard *sh, struct outq *q);

#endif
