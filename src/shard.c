/*
 * shard: see shard.h. The loop, the dispatch of completions, and the
 * services the connection modules use: buffers, receive arming, flushing,
 * closing, accept backoff, the access log.
 */
#include "shard.h"

#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "client.h"
#include "log.h"
#include "plugin.h"
#include "server.h"
#include "shadow.h"
#include "upstream.h"
#include "uring.h"
#include "util.h"

#define EVENT_BATCH 256
#define LINGER_NS (2 * NS_PER_SEC)
#define POOL_IDLE_NS (30 * NS_PER_SEC)
#define ACCEPT_RETRY_NS (100 * NS_PER_MSEC)
#define ALOG_CAP (64 * 1024)
#define BYTES_BUDGET ((size_t)512 << 20)
#define ZC_MIN_BYTES (16 * 1024)	/* below this SEND_ZC costs more than it saves */
/*
 * Every this many seconds the byte pools give back what sat unused since
 * the last time (bytepool_trim): a steady load keeps its buffers, a burst's
 * are gone 10 to 20 s after it. malloc_trim then hands the freed pages of
 * small classes (which malloc keeps in its arena) back to the kernel.
 */
#define POOL_TRIM_S 10
#define MALLOC_TRIM_MIN ((size_t)1 << 20)

/* --- buffers ----------------------------------------------------------------- */

void shard_buf_hold(struct shard *sh, uint32_t bref)
{
	unsigned g = bref >> 16, bid = bref & 0xffff;
	if (sh->bufref[g][bid]++ == 0)
		sh->bufs_out[g]++;
}

void shard_buf_drop(struct shard *sh, uint32_t bref)
{
	unsigned g = bref >> 16, bid = bref & 0xffff;
	if (--sh->bufref[g][bid] == 0) {
		uring_buf_recycle(sh->ring, g, bid);
		sh->bufs_out[g]--;
	}
}

void *shard_buf_addr(struct shard *sh, uint32_t bref)
{
	return uring_buf_addr(sh->ring, bref >> 16, bref & 0xffff);
}

/* --- receive arming ------------------------------------------------------------- */

static void arm_now(struct shard *sh, struct conn *c)
{
	uring_recv_multishot(sh->ring, c->fd, c->group, op_data(c, (enum op)c->recv_op));
	c->recv_armed = true;
	c->inflight++;
}

void shard_arm_recv(struct shard *sh, struct conn *c, enum op op)
{
	c->recv_op = (uint8_t)op;
	if (c->recv_armed || c->paused || c->closing || c->starved)
		return;
	/* Arming on an empty buffer ring fails at once with ENOBUFS; wait
	 * for a buffer to come back instead of spinning. */
	if (sh->bufs_out[c->group] >= sh->buf_count[c->group]) {
		c->starved = true;
		c->starved_next = sh->starved[c->group];
		sh->starved[c->group] = c;
		return;
	}
	arm_now(sh, c);
}

void shard_pause_recv(struct shard *sh, struct conn *c, enum op op, enum pause_reason why)
{
	bool was = c->paused != 0;
	c->paused |= (uint8_t)why;
	if (!was && c->recv_armed)
		uring_cancel(sh->ring, op_data(c, op));
}

void shard_resume_recv(struct shard *sh, struct conn *c, enum op op, enum pause_reason why)
{
	if (!(c->paused & why))
		return;
	c->paused &= (uint8_t)~why;
	shard_arm_recv(sh, c, op);
}

/* Buffers came back: give waiting connections their receive again. */
static void feed_starved(struct shard *sh)
{
	for (unsigned g = 0; g < BG_COUNT; g++) {
		while (sh->starved[g] && sh->bufs_out[g] < sh->buf_count[g]) {
			struct conn *c = sh->starved[g];
			sh->starved[g] = c->starved_next;
			c->starved = false;
			c->starved_next = NULL;
			if (conn_wants_recv(c))
				arm_now(sh, c);
		}
	}
}

/* --- flushing and closing --------------------------------------------------------- */

void shard_mark_dirty(struct shard *sh, struct conn *c)
{
	if (c->dirty || c->closing)
		return;
	c->dirty = true;
	c->dirty_next = sh->dirty;
	sh->dirty = c;
}

static void flush_dirty(struct shard *sh)
{
	while (sh->dirty) {
		struct conn *c = sh->dirty;
		sh->dirty = c->dirty_next;
		c->dirty = false;
		c->dirty_next = NULL;
		if (c->closing)
			continue;
		if (c->kind == CONN_UPSTREAM &&
		    ((struct upstream *)(void *)c)->state == UP_CONNECTING)
			continue;	/* flushed once connected */
		uint32_t bytes = outq_next_bytes(&c->out);
		struct msghdr *msg = outq_next(&c->out);
		if (!msg)
			continue;
		uint64_t data = op_data(c, c->kind == CONN_CLIENT ? OP_CLIENT_SEND : OP_UP_SEND);
		/* SEND_ZC only pays off for large sends on a real NIC, and only
		 * toward clients (master responses); it is an operator's choice. */
		if (c->kind == CONN_CLIENT && sh->cfg->send_zc && bytes >= ZC_MIN_BYTES) {
			uring_sendmsg_zc(sh->ring, c->fd, msg, data);
			CTR_INC(&sh->ctr, zc_sends);
		} else if (msg->msg_iovlen == 1) {
			/* One piece (a request head, a small answer): a plain send
			 * spares the kernel importing a msghdr and an iovec. */
			uring_send(sh->ring, c->fd, msg->msg_iov[0].iov_base, msg->msg_iov[0].iov_len, data);
		} else {
			uring_sendmsg(sh->ring, c->fd, msg, data);
		}
		c->inflight++;
	}
}

void shard_close_conn(struct shard *sh, struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	/* Every request on the socket ends (their completions still come),
	 * then the descriptor goes. */
	uring_cancel_fd(sh->ring, c->fd);
	uring_close_fd(sh->ring, c->fd);
	c->grave_next = sh->grave;
	sh->grave = c;
}

/* Free closed connections whose last completion has arrived. */
static void bury(struct shard *sh)
{
	struct conn **pp = &sh->grave;
	while (*pp) {
		struct conn *c = *pp;
		if (c->inflight || c->dirty || c->starved) {
			pp = &c->grave_next;
			continue;
		}
		*pp = c->grave_next;
		outq_clear(sh, &c->out);
		if (c->kind == CONN_CLIENT)
			client_free(sh, (struct client *)(void *)c);
		else
			upstream_free(sh, (struct upstream *)(void *)c);
	}
}

/* The starved list may hold closing connections: unlink them so they can go. */
static void unstarve_closing(struct shard *sh)
{
	for (unsigned g = 0; g < BG_COUNT; g++) {
		struct conn **pp = &sh->starved[g];
		while (*pp) {
			struct conn *c = *pp;
			if (c->closing) {
				*pp = c->starved_next;
				c->starved = false;
				c->starved_next = NULL;
			} else {
				pp = &c->starved_next;
			}
		}
	}
}

/* --- accepting ---------------------------------------------------------------------- */

static void arm_accept(struct shard *sh)
{
	if (sh->accepting || sh->draining || sh->lfd < 0)
		return;
	uring_accept_multishot(sh->ring, sh->lfd, op_data(sh, OP_ACCEPT));
	sh->accepting = true;
	sh->accept_paused = false;
}

static void pause_accept(struct shard *sh)
{
	if (sh->accept_paused)
		return;
	sh->accept_paused = true;
	CTR_INC(&sh->ctr, accept_backoffs);
	if (sh->accepting)
		uring_cancel(sh->ring, op_data(sh, OP_ACCEPT));
}

static void on_accept_retry(struct timer *t, void *ctx)
{
	struct shard *sh = ctx;
	if (sh->nclients < sh->cfg->max_conns)
		arm_accept(sh);
}

void shard_client_closed(struct shard *sh)
{
	if (sh->accept_paused && !sh->draining && sh->nclients < sh->cfg->max_conns &&
	    !timer_armed(&sh->accept_retry))
		arm_accept(sh);
}

static void on_accept(struct shard *sh, const struct uring_event *ev)
{
	if (!(ev->flags & UEV_MORE))
		sh->accepting = false;
	if (ev->res >= 0) {
		sh->accept_starved = false;
		if (sh->draining)
			uring_close_fd(sh->ring, ev->res);
		else
			client_accept(sh, ev->res);
		if (sh->nclients >= sh->cfg->max_conns)
			pause_accept(sh);
	} else if (ev->res == -EMFILE || ev->res == -ENFILE || ev->res == -ENOBUFS ||
		   ev->res == -ENOMEM) {
		/* Out of descriptors or memory: back off instead of spinning on
		 * an accept that fails at once, and try again shortly. */
		if (!sh->accept_starved)
			log_warn("accept: %s; retrying every %lld ms", strerror(-ev->res),
				 ACCEPT_RETRY_NS / NS_PER_MSEC);
		sh->accept_starved = true;
		pause_accept(sh);
		timer_start(&sh->timers, &sh->accept_retry, sh->tq_accept, sh->now, on_accept_retry);
		return;
	} else if (ev->res != -ECANCELED) {
		log_debug("accept: %s", strerror(-ev->res));
	}
	if (!sh->accepting && !sh->accept_paused)
		arm_accept(sh);
}

/* --- access log ------------------------------------------------------------------------ */

static void alog_flush(struct shard *sh)
{
	if (sh->alog_writing || sh->alog_len == 0)
		return;
	char *full = sh->alog;
	sh->alog = sh->alog_inflight;
	sh->alog_inflight = full;
	uring_write(sh->ring, sh->access_fd, full, (unsigned)sh->alog_len, op_data(sh, OP_LOG_WRITE));
	sh->alog_writing = true;
	sh->alog_len = 0;
}

void shard_access_log(struct shard *sh, const char *line, size_t len)
{
	if (sh->alog_len + len > ALOG_CAP)
		alog_flush(sh);
	if (sh->alog_len + len > ALOG_CAP)
		return;	/* both buffers busy: the line is lost */
	memcpy(sh->alog + sh->alog_len, line, len);
	sh->alog_len += len;
	if (sh->alog_len > ALOG_CAP / 2)
		alog_flush(sh);
}

static void trim_pools(struct shard *sh)
{
	size_t freed = bytepool_trim(&sh->bytes) + bytepool_trim(&sh->shadow_bytes);
	if (freed >= MALLOC_TRIM_MIN)
		malloc_trim(0);
}

static void on_tick(struct timer *t, void *ctx)
{
	struct shard *sh = ctx;
	alog_flush(sh);
	if (++sh->ticks % POOL_TRIM_S == 0)
		trim_pools(sh);
	timer_start(&sh->timers, &sh->tick, sh->tq_second, sh->now, on_tick);
}

/* --- draining ---------------------------------------------------------------------------- */

static void begin_drain(struct shard *sh)
{
	if (sh->draining)
		return;
	sh->draining = true;
	sh->drain_deadline = sh->now + sec_to_ns(sh->cfg->drain_timeout);
	if (sh->accepting)
		uring_cancel(sh->ring, op_data(sh, OP_ACCEPT));
	if (sh->lfd >= 0) {
		uring_close_fd(sh->ring, sh->lfd);
		sh->lfd = -1;
	}
	timer_stop(&sh->accept_retry);
	for (struct client *cl = sh->clients, *next; cl; cl = next) {
		next = cl->next;
		client_drain(sh, cl);
	}
	upstream_close_idle(sh);
}

/* Past the deadline: whatever is still open is cut. */
static void force_close(struct shard *sh)
{
	while (sh->clients)
		client_force_close(sh, sh->clients);
	shadow_abort_all(sh);
	upstream_close_idle(sh);
}

static bool drained(struct shard *sh)
{
	return sh->draining && sh->nclients == 0 && sh->records_live == 0 && !sh->grave &&
	       !sh->alog_writing && !sh->cmp_wake_inflight;
}

static void on_wake(struct shard *sh, const struct uring_event *ev)
{
	if (server_draining(sh->srv))
		begin_drain(sh);
	if (server_force_stop(sh->srv))
		sh->drain_deadline = sh->now;
	uring_read(sh->ring, sh->wake_fd, &sh->wake_val, sizeof sh->wake_val, op_data(sh, OP_WAKE));
}

void shard_wake(struct shard *sh)
{
	uint64_t one = 1;
	ssize_t r = write(sh->wake_fd, &one, sizeof one);
	(void)r;
}

/* --- the loop -------------------------------------------------------------------------------- */

static void dispatch(struct shard *sh, const struct uring_event *ev)
{
	void *obj = op_obj(ev->data);
	switch ((enum op)(ev->data & OP_MASK)) {
	case OP_NONE:
		break;	/* a cancel or close that found nothing: fine */
	case OP_ACCEPT:
		on_accept(sh, ev);
		break;
	case OP_WAKE:
		on_wake(sh, ev);
		break;
	case OP_CLIENT_RECV:
		client_on_recv(sh, obj, ev);
		break;
	case OP_CLIENT_SEND:
		client_on_send(sh, obj, ev);
		break;
	case OP_UP_CONNECT:
		upstream_on_connect(sh, obj, ev);
		break;
	case OP_UP_RECV:
		upstream_on_recv(sh, obj, ev);
		break;
	case OP_UP_SEND:
		upstream_on_send(sh, obj, ev);
		break;
	case OP_LOG_WRITE:
		sh->alog_writing = false;
		if (ev->res < 0)
			log_warn("access log: %s", strerror(-ev->res));
		break;
	case OP_CMP_WAKE:
		sh->cmp_wake_inflight = false;
		break;
	}
}

static void copy_ring_stats(struct shard *sh)
{
	const struct uring_stats *st = uring_stats(sh->ring);
	CTR_SET(&sh->ctr, enters, st->enters);
	CTR_SET(&sh->ctr, sqes, st->sqes);
	CTR_SET(&sh->ctr, cq_overflows, st->cq_overflows);
	CTR_SET(&sh->ctr, enobufs, st->enobufs);
}

static void run(struct shard *sh)
{
	struct uring_event ev[EVENT_BATCH];
	sh->now = now_ns();
	for (;;) {
		int64_t timeout = timers_next(&sh->timers, sh->now);
		if (sh->draining) {
			int64_t left = sh->drain_deadline - sh->now;
			timeout = timeout < 0 ? MAX(left, 0) : MIN(timeout, MAX(left, 0));
		}
		unsigned n = uring_wait(sh->ring, ev, EVENT_BATCH, timeout);
		sh->now = now_ns();
		for (unsigned i = 0; i < n; i++)
			dispatch(sh, &ev[i]);
		timers_run(&sh->timers, sh->now, sh);
		shadow_reclaim(sh);
		if (sh->draining && sh->now >= sh->drain_deadline && !sh->forced) {
			sh->forced = true;
			force_close(sh);
		}
		flush_dirty(sh);
		unstarve_closing(sh);
		feed_starved(sh);
		bury(sh);
		copy_ring_stats(sh);
		if (drained(sh))
			break;
		if (sh->forced && sh->now >= sh->drain_deadline + NS_PER_SEC)
			break;	/* completions that never came: give up on them */
	}
	alog_flush(sh);
	uring_flush(sh->ring);
}

static int setup_ring(struct shard *sh)
{
	const struct kage_config *cfg = sh->cfg;
	struct uring_params p = {
		.sq_entries = cfg->ring_entries,
		.cq_entries = cfg->ring_entries * 4,
	};
	char why[256];
	int ret = uring_open(&sh->ring, &p, why, sizeof why);
	if (ret < 0) {
		log_error("shard %u: %s", sh->id, why);
		return ret;
	}
	/*
	 * Buffers by role. Master responses are what kage forwards from where
	 * they land, often large: --buffer-size each (fewer receives and
	 * iovecs per response). Requests are mostly small heads and shadow
	 * responses are copied out and recycled at once: 16 KiB is plenty,
	 * and shadows need fewer.
	 */
	unsigned small = MIN(cfg->buffer_size, 16384u);
	sh->buf_count[BG_MASTER] = cfg->buffers;
	sh->buf_size[BG_MASTER] = cfg->buffer_size;
	sh->buf_count[BG_CLIENT] = cfg->buffers;
	sh->buf_size[BG_CLIENT] = small;
	sh->buf_count[BG_SHADOW] = cfg->buffers > 1 ? cfg->buffers / 2 : 1;
	sh->buf_size[BG_SHADOW] = small;
	for (unsigned g = 0; g < BG_COUNT; g++) {
		ret = uring_bufgroup_add(sh->ring, g, sh->buf_count[g], sh->buf_size[g]);
		if (ret < 0) {
			log_error("shard %u: provided buffers (%u x %u bytes): %s", sh->id,
				  sh->buf_count[g], sh->buf_size[g], strerror(-ret));
			return ret;
		}
		sh->bufref[g] = calloc(sh->buf_count[g], sizeof *sh->bufref[g]);
		if (!sh->bufref[g])
			return -ENOMEM;
	}
	return 0;
}

static void pin(struct shard *sh)
{
	const struct kage_config *cfg = sh->cfg;
	if (!cfg->npin_cpus)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	int cpu = cfg->pin_cpus[sh->id % cfg->npin_cpus];
	CPU_SET(cpu, &set);
	int err = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
	if (err)
		log_warn("shard %u: cannot pin to CPU %d: %s", sh->id, cpu, strerror(err));
}

static void *shard_main(void *arg)
{
	struct shard *sh = arg;
	char name[16];
	snprintf(name, sizeof name, "kage-shard-%u", sh->id);
	pthread_setname_np(pthread_self(), name);
	pin(sh);
	/* The ring is made here, in the thread that will use it: a
	 * SINGLE_ISSUER ring belongs to the thread that created it. */
	if (setup_ring(sh) < 0) {
		atomic_store_explicit(&sh->exited, true, memory_order_release);
		server_shard_ready(sh->srv, sh, false);
		return NULL;
	}
	uring_read(sh->ring, sh->wake_fd, &sh->wake_val, sizeof sh->wake_val, op_data(sh, OP_WAKE));
	arm_accept(sh);
	sh->now = now_ns();
	timer_start(&sh->timers, &sh->tick, sh->tq_second, sh->now, on_tick);
	server_shard_ready(sh->srv, sh, true);
	run(sh);
	atomic_store_explicit(&sh->exited, true, memory_order_release);
	return NULL;
}

/* --- setup and teardown ------------------------------------------------------------------- */

int shard_init(struct shard *sh, struct server *srv, unsigned id, int lfd)
{
	const struct kage_config *cfg = server_config(srv);
	memset(sh, 0, sizeof *sh);
	sh->id = id;
	sh->srv = srv;
	sh->cfg = cfg;
	sh->lfd = lfd;
	sh->access_fd = server_access_fd(srv);
	sh->cmp = server_comparator(srv);
	sh->plugin = server_plugin(srv);
	if (sh->plugin && PLUGIN_HAS(sh->plugin, munge_headers) && !(sh->kh = malloc(sizeof *sh->kh)))
		return -ENOMEM;
	sh->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (sh->wake_fd < 0)
		return -errno;

	timers_init(&sh->timers);
	sh->tq_client = timers_queue(&sh->timers, sec_to_ns(cfg->client_timeout));
	sh->tq_backend = timers_queue(&sh->timers, sec_to_ns(cfg->backends[0].timeout));
	for (unsigned b = 1; b < cfg->nbackends; b++)
		sh->tq_shadow[b] = timers_queue(&sh->timers, sec_to_ns(cfg->backends[b].timeout));
	sh->tq_linger = timers_queue(&sh->timers, LINGER_NS);
	sh->tq_pool = timers_queue(&sh->timers, POOL_IDLE_NS);
	sh->tq_second = timers_queue(&sh->timers, NS_PER_SEC);
	sh->tq_accept = timers_queue(&sh->timers, ACCEPT_RETRY_NS);

	objpool_init(&sh->client_pool, sizeof(struct client), 64);
	objpool_init(&sh->upstream_pool, sizeof(struct upstream), 32);
	objpool_init(&sh->outblk_pool, sizeof(struct outblk), 32);
	bytepool_init(&sh->bytes, BYTES_BUDGET);
	for (unsigned b = 0; b < cfg->nbackends; b++)
		if (head_rules_build(&sh->rules[b], cfg, (int)b) < 0)
			return -ENOMEM;
	if (sh->access_fd >= 0) {
		sh->alog = malloc(ALOG_CAP);
		sh->alog_inflight = malloc(ALOG_CAP);
		if (!sh->alog || !sh->alog_inflight)
			return -ENOMEM;
	}
	if (shadow_init(sh) < 0)
		return -ENOMEM;
	return 0;
}

int shard_start(struct shard *sh)
{
	int err = pthread_create(&sh->thread, NULL, shard_main, sh);
	if (err)
		return -err;
	sh->started = true;
	return 0;
}

void shard_join(struct shard *sh)
{
	if (sh->started)
		pthread_join(sh->thread, NULL);
	sh->started = false;
}

void shard_destroy(struct shard *sh)
{
	shadow_fini(sh);
	for (unsigned b = 0; b < KAGE_MAX_BACKENDS; b++)
		head_rules_free(&sh->rules[b]);
	if (sh->ring)
		uring_close(sh->ring);
	for (unsigned g = 0; g < BG_COUNT; g++)
		free(sh->bufref[g]);
	objpool_destroy(&sh->client_pool);
	objpool_destroy(&sh->upstream_pool);
	objpool_destroy(&sh->outblk_pool);
	bytepool_destroy(&sh->bytes);
	free(sh->alog);
	free(sh->alog_inflight);
	free(sh->kh);
	if (sh->lfd >= 0)
		close(sh->lfd);
	if (sh->wake_fd >= 0)
		close(sh->wake_fd);
}
