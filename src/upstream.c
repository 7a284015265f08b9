/*
 * upstream: see upstream.h.
 */
#include "upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "uring.h"
#include "util.h"

/* Idle pooled connections kept per backend per shard. */
#define POOL_MAX_IDLE 1024
/* Connection attempts in flight per shadow per shard (see upstream_available). */
#define SHADOW_CONNECTING_MAX 64

static struct backend_counters *bctr(struct shard *sh, const struct upstream *up)
{
	return &sh->ctr.backend[up->backend];
}

static void on_body(void *owner, const char *at, size_t len)
{
	struct upstream *up = owner;
	if (up->ops && up->ops->on_body)
		up->ops->on_body(up, at, len, up->cur_bref);
}

static void pool_remove(struct shard *sh, struct upstream *up)
{
	struct upstream_pool *pool = &sh->pools[up->backend];
	for (struct upstream **pp = &pool->idle; *pp; pp = &(*pp)->pool_next) {
		if (*pp == up) {
			*pp = up->pool_next;
			pool->nidle--;
			break;
		}
	}
	up->pool_next = NULL;
}

static void close_upstream(struct shard *sh, struct upstream *up)
{
	if (up->state == UP_DEAD)
		return;
	if (up->state == UP_IDLE)
		pool_remove(sh, up);
	if (up->state == UP_CONNECTING)
		sh->pools[up->backend].nconnecting--;
	up->state = UP_DEAD;
	/* No callback from now on; the owner stays readable for the one the
	 * caller may be about to make (fail() reports after closing). */
	up->ops = NULL;
	timer_stop(&up->timer);
	outq_clear(sh, &up->c.out);
	shard_close_conn(sh, &up->c);
}

/* The exchange failed: close, then tell the owner (who may retry). */
static void fail(struct shard *sh, struct upstream *up, enum backend_error err)
{
	const struct upstream_ops *ops = up->ops;
	if (up->state == UP_DEAD)
		return;
	CTR_INC(bctr(sh, up), errors[err]);
	close_upstream(sh, up);
	if (ops && ops->on_error)
		ops->on_error(up, err);
}

/* Connect or response stall on an active upstream; idle expiry in the pool. */
static void on_timer(struct timer *t, void *ctx)
{
	struct shard *sh = ctx;
	struct upstream *up = container_of(t, struct upstream, timer);
	if (up->state == UP_IDLE)
		close_upstream(sh, up);
	else
		fail(sh, up, BERR_TIMEOUT);
}

static int open_socket(const struct cfg_addr *addr)
{
	int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static struct upstream *take_pooled(struct shard *sh, int backend)
{
	struct upstream_pool *pool = &sh->pools[backend];
	struct upstream *up = pool->idle;
	if (!up)
		return NULL;
	pool->idle = up->pool_next;
	pool->nidle--;
	up->pool_next = NULL;
	timer_stop(&up->timer);
	up->state = UP_ACTIVE;
	up->reused = true;
	CTR_INC(&sh->ctr.backend[backend], reuses);
	return up;
}

static struct upstream *connect_new(struct shard *sh, int backend)
{
	const struct cfg_backend *b = &sh->cfg->backends[backend];
	int fd = open_socket(&b->addr);
	if (fd < 0) {
		log_warn("socket for backend %s: %s", b->name, strerror(-fd));
		return NULL;
	}
	struct upstream *up = objpool_get(&sh->upstream_pool);
	if (!up) {
		close(fd);
		return NULL;
	}
	up->c.sh = sh;
	up->c.fd = fd;
	up->c.kind = CONN_UPSTREAM;
	up->c.group = b->master ? BG_MASTER : BG_SHADOW;
	up->backend = (uint8_t)backend;
	up->state = UP_CONNECTING;
	up->reused = false;
	/* Shadow responses are captured into records: their heads come from
	 * the shadow pool, under --shadow-memory. */
	http_parser_init(&up->parser, HTTP_KIND_RESPONSE, b->master ? &sh->bytes : &sh->shadow_bytes,
			 on_body, up);
	sh->pools[backend].nopen++;
	sh->pools[backend].nconnecting++;
	CTR_INC(&sh->ctr.backend[backend], connects);
	uring_connect(sh->ring, fd, (const struct sockaddr *)&b->addr.ss, b->addr.len,
		      op_data(up, OP_UP_CONNECT));
	up->c.inflight++;
	return up;
}

struct upstream *upstream_get(struct shard *sh, int backend, int tq, bool fresh,
			      const struct upstream_ops *ops, void *owner)
{
	struct upstream *up = fresh ? NULL : take_pooled(sh, backend);
	if (!up)
		up = connect_new(sh, backend);
	if (!up)
		return NULL;
	up->ops = ops;
	up->owner = owner;
	up->tq = tq;
	up->got_bytes = false;
	up->reusable = false;
	/* Connecting counts against the backend's timeout too. */
	timer_start(&sh->timers, &up->timer, tq, sh->now, on_timer);
	return up;
}

bool upstream_available(struct shard *sh, int backend)
{
	const struct upstream_pool *pool = &sh->pools[backend];
	return pool->idle || pool->nconnecting < SHADOW_CONNECTING_MAX;
}

void upstream_request_queued(struct shard *sh, struct upstream *up, uint8_t method)
{
	http_parser_expect(&up->parser, method);
	CTR_INC(bctr(sh, up), requests);
	if (up->state == UP_ACTIVE)
		shard_mark_dirty(sh, &up->c);
	timer_start(&sh->timers, &up->timer, up->tq, sh->now, on_timer);
}

void upstream_release(struct shard *sh, struct upstream *up)
{
	struct upstream_pool *pool = &sh->pools[up->backend];
	bool clean = up->state == UP_ACTIVE && up->reusable && !up->c.closing &&
		     outq_empty(&up->c.out) && http_idle(&up->parser) && !sh->draining;
	if (!clean || pool->nidle >= POOL_MAX_IDLE) {
		close_upstream(sh, up);
		return;
	}
	msg_release(&up->parser.msg, &sh->bytes);
	up->state = UP_IDLE;
	up->ops = NULL;
	up->owner = NULL;
	up->pool_next = pool->idle;
	pool->idle = up;
	pool->nidle++;
	timer_start(&sh->timers, &up->timer, sh->tq_pool, sh->now, on_timer);
	/* Keep listening: a backend closing the idle connection is seen at
	 * once. Whatever paused it belonged to the owner that just left. */
	up->c.paused = 0;
	shard_arm_recv(sh, &up->c, OP_UP_RECV);
}

void upstream_abort(struct shard *sh, struct upstream *up)
{
	close_upstream(sh, up);
}

void upstream_pause(struct shard *sh, struct upstream *up)
{
	shard_pause_recv(sh, &up->c, OP_UP_RECV, PAUSE_CLIENT_SLOW);
}

void upstream_resume(struct shard *sh, struct upstream *up)
{
	shard_resume_recv(sh, &up->c, OP_UP_RECV, PAUSE_CLIENT_SLOW);
}

void upstream_on_connect(struct shard *sh, struct upstream *up, const struct uring_event *ev)
{
	up->c.inflight--;
	if (up->state != UP_CONNECTING)
		return;		/* closed meanwhile */
	sh->pools[up->backend].nconnecting--;
	up->state = UP_ACTIVE;	/* connected, or about to fail as such */
	if (ev->res < 0) {
		log_debug("connect to %s: %s", sh->cfg->backends[up->backend].name,
			  strerror(-ev->res));
		fail(sh, up, BERR_CONNECT);
		return;
	}
	shard_arm_recv(sh, &up->c, OP_UP_RECV);
	shard_mark_dirty(sh, &up->c);
	timer_start(&sh->timers, &up->timer, up->tq, sh->now, on_timer);
}

/* Parse response bytes for the owner. Returns when the data is used up
 * or the upstream stopped being the owner's. */
static void parse_response(struct shard *sh, struct upstream *up, const char *p, size_t left)
{
	/* A head without a body owes its end even when no byte is left. */
	while ((left || up->parser.end_pending) && up->state == UP_ACTIVE) {
		size_t used;
		enum http_event e = http_parse(&up->parser, p, left, &used);
		p += used;
		left -= used;
		switch (e) {
		case HEV_MORE:
			if (!used && left) {
				/* No progress on bytes that are there: never spin. */
				fail(sh, up, BERR_MALFORMED);
				return;
			}
			break;
		case HEV_HEAD:
			if (!up->parser.msg.interim) {
				unsigned cls = up->parser.msg.status / 100;
				CTR_INC(bctr(sh, up), responses[cls <= 5 ? cls : 0]);
			}
			up->ops->on_head(up, &up->parser.msg);
			break;
		case HEV_END:
			if (up->parser.msg.interim) {
				msg_release(&up->parser.msg, &sh->bytes);
				break;
			}
			timer_stop(&up->timer);
			up->requests++;
			/* Bytes after a complete response on a connection that carries
			 * one request at a time: the backend is confused; never reuse. */
			up->reusable = up->parser.keep_alive && left == 0;
			up->ops->on_end(up);
			return;
		case HEV_UPGRADE:
			timer_stop(&up->timer);
			up->state = UP_TUNNEL;
			CTR_INC(bctr(sh, up), responses[1]);
			up->ops->on_head(up, &up->parser.msg);
			/* on_head may have closed it (a 101 nobody asked for). */
			if (left && up->state == UP_TUNNEL)
				up->ops->on_tunnel(up, p, left, up->cur_bref);
			return;
		case HEV_ERROR:
			log_debug("malformed response from %s: %s", sh->cfg->backends[up->backend].name,
				  up->parser.error_reason ? up->parser.error_reason : "?");
			fail(sh, up, BERR_MALFORMED);
			return;
		}
	}
}

static void on_data(struct shard *sh, struct upstream *up, const char *p, size_t len)
{
	switch (up->state) {
	case UP_ACTIVE:
		up->got_bytes = true;
		timer_start(&sh->timers, &up->timer, up->tq, sh->now, on_timer);
		parse_response(sh, up, p, len);
		break;
	case UP_TUNNEL:
		up->ops->on_tunnel(up, p, len, up->cur_bref);
		break;
	case UP_IDLE:
		/* Nobody asked: whatever this is, the connection is not clean. */
		close_upstream(sh, up);
		break;
	default:
		break;
	}
}

static void on_eof(struct shard *sh, struct upstream *up)
{
	switch (up->state) {
	case UP_ACTIVE: {
		enum http_event e = http_finish(&up->parser);
		if (e == HEV_END) {
			/* A close-delimited response ends here. */
			timer_stop(&up->timer);
			up->reusable = false;
			up->ops->on_end(up);
			if (up->state != UP_DEAD)
				close_upstream(sh, up);
		} else {
			fail(sh, up, BERR_RESET);
		}
		break;
	}
	case UP_TUNNEL: {
		const struct upstream_ops *ops = up->ops;
		close_upstream(sh, up);
		if (ops)
			ops->on_end(up);
		break;
	}
	default:
		close_upstream(sh, up);
		break;
	}
}

void upstream_on_recv(struct shard *sh, struct upstream *up, const struct uring_event *ev)
{
	if (!(ev->flags & UEV_MORE)) {
		up->c.recv_armed = false;
		up->c.inflight--;
	}
	if (ev->res > 0 && (ev->flags & UEV_BUFFER)) {
		uint32_t bref = bref_make(up->c.group, uev_bid(ev));
		shard_buf_hold(sh, bref);	/* the reference taken by receiving */
		if (up->state != UP_DEAD) {
			up->cur_bref = bref;
			on_data(sh, up, shard_buf_addr(sh, bref), (size_t)ev->res);
		}
		shard_buf_drop(sh, bref);
	} else if (ev->res == 0) {
		on_eof(sh, up);
		return;
	} else if (ev->res == -ENOBUFS || ev->res == -ECANCELED) {
		/* Out of buffers, or paused: re-armed below or by resume. */
	} else if (ev->res < 0) {
		if (up->state == UP_IDLE)
			close_upstream(sh, up);
		else
			fail(sh, up, BERR_RESET);
		return;
	}
	if (conn_wants_recv(&up->c) && up->state != UP_DEAD)
		shard_arm_recv(sh, &up->c, OP_UP_RECV);
}

void upstream_on_send(struct shard *sh, struct upstream *up, const struct uring_event *ev)
{
	up->c.inflight--;
	bool whole = outq_sent(sh, &up->c.out, ev->res);
	if (up->state == UP_DEAD)
		return;
	if (!whole) {
		fail(sh, up, BERR_RESET);
		return;
	}
	if (!outq_empty(&up->c.out))
		shard_mark_dirty(sh, &up->c);
	else if (up->ops && up->ops->on_drained)
		up->ops->on_drained(up);
}

void upstream_free(struct shard *sh, struct upstream *up)
{
	http_parser_reset(&up->parser);
	sh->pools[up->backend].nopen--;
	objpool_put(&sh->upstream_pool, up);
}

void upstream_close_idle(struct shard *sh)
{
	for (unsigned b = 0; b < sh->cfg->nbackends; b++)
		while (sh->pools[b].idle)
			close_upstream(sh, sh->pools[b].idle);
}
