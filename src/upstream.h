#ifndef KAGE_UPSTREAM_H
#define KAGE_UPSTREAM_H
/*
 * upstream: connections to backends and each shard's keep-alive pool of
 * them. An upstream carries one request at a time for one owner: a client
 * exchange (master) or a shadow leg. The owner queues the request on
 * up->c.out; the upstream connects if it must, sends, parses the response
 * and reports it through the owner's upstream_ops. When the owner is done
 * it releases the upstream: back to the pool if the response left the
 * connection clean and reusable, closed otherwise.
 *
 * While pooled, an upstream keeps its multishot receive armed (holding no
 * buffer) so a backend closing an idle connection is noticed at once; a
 * byte arriving unasked marks the connection unusable.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "counters.h"
#include "http.h"
#include "shard.h"

struct uring_event;

struct upstream;

struct upstream_ops {
	/* A response head (m->interim for 1xx; m->upgrade for 101). */
	void (*on_head)(struct upstream *up, struct http_msg *m);
	/* Body bytes, chunking undone; `bref` is the buffer they live in. */
	void (*on_body)(struct upstream *up, const char *at, size_t len, uint32_t bref);
	/* The response is complete. */
	void (*on_end)(struct upstream *up);
	/* After a 101: bytes that followed the head (tunnel data). */
	void (*on_tunnel)(struct upstream *up, const char *at, size_t len, uint32_t bref);
	/* The exchange failed; the upstream is already closed. */
	void (*on_error)(struct upstream *up, enum backend_error err);
	/* The request bytes queued so far have all been sent. */
	void (*on_drained)(struct upstream *up);
};

enum upstream_state {
	UP_CONNECTING = 1,
	UP_ACTIVE,		/* carrying a request for an owner */
	UP_IDLE,		/* in the pool */
	UP_TUNNEL,		/* after a 101: raw bytes */
	UP_DEAD,		/* closing */
};

struct upstream {
	struct conn c;			/* first: the shard's loop sees a conn */
	uint8_t backend;
	uint8_t state;			/* enum upstream_state */
	bool reused;			/* this request went out on a pooled connection */
	bool got_bytes;			/* a response byte arrived for this request */
	bool reusable;			/* the response left the connection clean */
	int tq;				/* timer queue for connect and response stalls */
	struct timer timer;
	struct http_parser parser;
	const struct upstream_ops *ops;
	void *owner;
	struct upstream *pool_next;
	uint32_t cur_bref;		/* the buffer being parsed */
	uint64_t requests;		/* served on this connection */
};

/*
 * An upstream to `backend` for `owner`: a pooled one if there is one,
 * else a new connection (its request waits in the queue until it is
 * connected); `fresh` skips the pool (a retry after a stale connection).
 * `tq` is the timer queue of this backend's timeout. NULL when
 * no socket could be made (the caller answers 502 / records an error).
 */
struct upstream *upstream_get(struct shard *sh, int backend, int tq, bool fresh,
			      const struct upstream_ops *ops, void *owner);

/*
 * Whether a shadow request to `backend` may have a connection now: a
 * pooled one, or room for one more connection attempt. A shadow that does
 * not answer its SYNs would otherwise collect a connecting socket per
 * shadowed request; past the bound those shadows are skipped (overload).
 */
bool upstream_available(struct shard *sh, int backend);

/* The request is queued: start timing the response (and expect `method`). */
void upstream_request_queued(struct shard *sh, struct upstream *up, uint8_t method);

/* The owner is done: pool the connection if it is clean, else close it. */
void upstream_release(struct shard *sh, struct upstream *up);
/* Close it now (the owner no longer wants its response). */
void upstream_abort(struct shard *sh, struct upstream *up);
/* Stop or resume reading the response (backpressure from the client). */
void upstream_pause(struct shard *sh, struct upstream *up);
void upstream_resume(struct shard *sh, struct upstream *up);

/* Completions, from the shard's loop. */
void upstream_on_connect(struct shard *sh, struct upstream *up, const struct uring_event *ev);
void upstream_on_recv(struct shard *sh, struct upstream *up, const struct uring_event *ev);
void upstream_on_send(struct shard *sh, struct upstream *up, const struct uring_event *ev);
/* Every operation completed after close: give the memory back. */
void upstream_free(struct shard *sh, struct upstream *up);
/* Close every pooled connection (drain, shutdown). */
void upstream_close_idle(struct shard *sh);

#endif
