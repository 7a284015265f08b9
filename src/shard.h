#ifndef KAGE_SHARD_H
#define KAGE_SHARD_H
/*
 * shard: one thread, one io_uring, one SO_REUSEPORT listener, and
 * everything the requests it accepts need: connections, keep-alive pools
 * to every backend, timers, provided buffers, allocators and counters.
 * Shards share nothing on the request path; the only thing a shard
 * touches that another thread also touches is its queue to the
 * comparator (and relaxed reads of its counters).
 *
 * The event loop (shard.c) waits on the ring, dispatches each completion
 * by the operation tag in its user data, runs expired timers, then sends
 * what the batch produced: each connection with new output is flushed
 * once per batch, so a response head and the body bytes that arrived with
 * it leave in one sendmsg.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "counters.h"
#include "head.h"
#include "outq.h"
#include "pool.h"
#include "spsc.h"
#include "timer.h"

struct server;
struct uring;
struct client;
struct upstream;
struct record;
struct comparator;
struct plugin;
struct kage_headers;

/* Provided-buffer groups, by role: shadow pressure never starves master. */
enum bgroup {
	BG_CLIENT = 0,		/* client requests */
	BG_MASTER = 1,		/* master responses, forwarded from where they land */
	BG_SHADOW = 2,		/* shadow responses, captured and recycled at once */
	BG_COUNT
};

/*
 * User data of a submission: the object's address with the operation in
 * its low bits (every object is 16-byte aligned). An object is only
 * reused once all its operations have completed, so a completion never
 * reaches the wrong owner.
 */
enum op {
	OP_NONE = 0,		/* housekeeping; failures only */
	OP_ACCEPT,
	OP_WAKE,
	OP_CLIENT_RECV,
	OP_CLIENT_SEND,
	OP_UP_CONNECT,
	OP_UP_RECV,
	OP_UP_SEND,
	OP_LOG_WRITE,
	OP_CMP_WAKE,		/* eventfd write that wakes the comparator */
};

#define OP_MASK 15u

static inline uint64_t op_data(const void *obj, enum op op)
{
	return (uint64_t)(uintptr_t)obj | (uint64_t)op;
}

static inline void *op_obj(uint64_t data)
{
	return (void *)(uintptr_t)(data & ~(uint64_t)OP_MASK);
}

/* A buffer reference packs the group and buffer id. */
static inline uint32_t bref_make(unsigned group, unsigned bid)
{
	return (uint32_t)(group << 16 | bid);
}

/*
 * What client and upstream connections have in common: the socket, its
 * output, and the bookkeeping that decides when the memory may be reused.
 */
struct conn {
	struct shard *sh;	/* owner: callbacks that carry only the object find it */
	int fd;
	uint8_t kind;		/* CONN_CLIENT or CONN_UPSTREAM */
	uint8_t inflight;	/* operations not yet completed */
	uint8_t group;		/* provided-buffer group it receives into */
	uint8_t recv_op;	/* enum op of its receive, to re-arm it */
	bool recv_armed;	/* a multishot recv is armed (its last completion not seen) */
	uint8_t paused;		/* PAUSE_* reasons not to receive: 0 = receive */
	bool dirty;		/* on the shard's flush list */
	bool starved;		/* on the shard's list waiting for buffers */
	bool closing;		/* close requested: free when inflight hits 0 */
	struct outq out;
	struct conn *dirty_next;
	struct conn *starved_next;
	struct conn *grave_next;	/* closed, waiting for its last completion */
};

enum conn_kind { CONN_CLIENT = 1, CONN_UPSTREAM = 2 };

/* Why a connection is not reading: each reason is lifted on its own. */
enum pause_reason {
	PAUSE_PIPELINE = 1 << 0,	/* client: pipelined requests waiting */
	PAUSE_UPSTREAM_FULL = 1 << 1,	/* client: master has not taken the body yet */
	PAUSE_CLIENT_SLOW = 1 << 2,	/* upstream: the client has not read the response */
};

/* Idle keep-alive connections to one backend (LIFO: the warmest first). */
struct upstream_pool {
	struct upstream *idle;
	unsigned nidle;
	unsigned nopen;		/* all connections to this backend */
	unsigned nconnecting;	/* of which still connecting */
};

struct shard {
	unsigned id;
	struct server *srv;
	const struct kage_config *cfg;
	pthread_t thread;
	struct uring *ring;
	int lfd;
	int wake_fd;
	uint64_t wake_val;
	int64_t now;		/* monotonic ns at the top of this loop iteration */

	struct timers timers;
	int tq_client;		/* --client-timeout */
	int tq_backend;		/* --backend-timeout */
	int tq_shadow[KAGE_MAX_BACKENDS];	/* each shadow's timeout */
	int tq_linger;		/* lingering close after an error response */
	int tq_pool;		/* idle pooled upstream connections */
	int tq_second;		/* 1 s housekeeping tick */
	int tq_accept;		/* accept backoff */
	struct timer accept_retry;	/* backoff after EMFILE */
	struct timer tick;
	unsigned ticks;			/* seconds, for the pool trim */

	struct objpool client_pool;
	struct objpool upstream_pool;
	struct objpool outblk_pool;
	struct bytepool bytes;	/* heads and other request-path bytes */

	uint16_t *bufref[BG_COUNT];	/* references per provided buffer */
	unsigned bufs_out[BG_COUNT];	/* buffers held by userspace */
	unsigned buf_count[BG_COUNT];	/* buffers in each group */
	unsigned buf_size[BG_COUNT];	/* and their size */

	struct upstream_pool pools[KAGE_MAX_BACKENDS];
	struct head_rules rules[KAGE_MAX_BACKENDS];	/* per-backend header edits */

	struct client *clients;	/* every open client, for drain */
	unsigned nclients;
	struct conn *dirty;
	struct conn *starved[BG_COUNT];
	struct conn *grave;

	bool accepting;		/* multishot accept armed */
	bool accept_paused;	/* max-conns or EMFILE */
	bool accept_starved;	/* EMFILE episode: warned once, until an accept succeeds */
	bool draining;
	bool forced;		/* the drain deadline passed: everything was cut */
	bool started;
	_Atomic bool exited;	/* the loop has returned (read by the server) */
	int64_t drain_deadline;

	/* shadow path (shadow.c) */
	struct bytepool shadow_bytes;	/* records: --shadow-memory */
	struct objpool record_pool;
	struct spsc to_cmp;		/* finished records, to the comparator */
	struct spsc from_cmp;		/* records the comparator is done with */
	struct comparator *cmp;
	const struct plugin *plugin;	/* hooks, or NULL */
	struct kage_headers *kh;	/* munge_headers scratch */
	uint64_t rng;			/* splitmix64 state: sampling, session ids */
	uint64_t method_mask;		/* --shadow-methods as llhttp method bits */
	uint64_t record_seq;
	unsigned records_live;		/* allocated and not yet returned */
	unsigned records_active;	/* of those, not yet handed over: the ones
					 * --shadow-max-inflight bounds */
	struct record *live;		/* records not yet handed over */
	bool cmp_wake_inflight;
	uint64_t cmp_wake_val;

	/* access log, flushed by the ring */
	int access_fd;
	char *alog;
	size_t alog_len;
	bool alog_writing;
	char *alog_inflight;

	struct shard_counters ctr;
};

int shard_init(struct shard *sh, struct server *srv, unsigned id, int lfd);
int shard_start(struct shard *sh);
void shard_join(struct shard *sh);
/* From another thread: make the shard look at the server's drain flag. */
void shard_wake(struct shard *sh);
void shard_destroy(struct shard *sh);

/* --- for the connection modules ----------------------------------------- */

/* Queue c for one flush at the end of this batch. */
void shard_mark_dirty(struct shard *sh, struct conn *c);
/*
 * (Re)arm c's multishot recv, now or when its group has buffers again,
 * unless it is paused or already armed. A recv whose cancel is still in
 * flight counts as armed: its final completion re-arms it if wanted.
 */
void shard_arm_recv(struct shard *sh, struct conn *c, enum op op);
/* Stop reading for `why` (backpressure); other reasons may also hold. */
void shard_pause_recv(struct shard *sh, struct conn *c, enum op op, enum pause_reason why);
/* Lift `why`; reading resumes when no reason is left. */
void shard_resume_recv(struct shard *sh, struct conn *c, enum op op, enum pause_reason why);
/* After a final recv completion: arm again if the connection still wants to read. */
static inline bool conn_wants_recv(const struct conn *c)
{
	return !c->recv_armed && !c->paused && !c->closing;
}
/* Cancel what is in flight on c and close its socket. */
void shard_close_conn(struct shard *sh, struct conn *c);

void shard_buf_hold(struct shard *sh, uint32_t bref);
void shard_buf_drop(struct shard *sh, uint32_t bref);
void *shard_buf_addr(struct shard *sh, uint32_t bref);

/* The accept side may take another client (max-conns). */
void shard_client_closed(struct shard *sh);

/* Append one line to the access log (buffered, written by the ring). */
void shard_access_log(struct shard *sh, const char *line, size_t len);

#endif
