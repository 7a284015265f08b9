#ifndef KAGE_RECORD_H
#define KAGE_RECORD_H
/*
 * record: one shadowed request, from selection to comparison. A shard
 * builds it (the request, then master's and each shadow's captured
 * response as they stream by) and, when every backend has finished, hands
 * it to the comparator through its queue. From then on the record is
 * read-only; the comparator gives it back through the return queue and the
 * shard frees it. All of its memory comes from the shard's shadow pool.
 */
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "counters.h"
#include "http.h"

struct upstream;
struct record;

/* One backend's side of a record. */
struct capture {
	struct record *rec;
	struct upstream *up;		/* while its exchange is in flight */
	uint8_t backend;		/* index into cfg->backends */
	uint8_t error;			/* enum backend_error */
	bool dispatched;		/* its request went out (shadows) */
	bool retried;			/* sent again after a stale pooled connection */
	bool done;
	uint16_t status;
	int64_t start_ns;		/* request sent (monotonic) */
	int64_t end_ns;			/* response complete or failure */
	struct http_msg head;		/* response head */
	uint8_t *body;			/* captured body, chunking undone */
	size_t body_cap;
	size_t body_len;		/* <= capture_max */
	uint64_t body_total;		/* whole body length */
	uint32_t body_crc;		/* zlib crc32 of the whole body */
};

struct record {
	struct record *next, *prev;	/* the shard's records not yet handed over */
	unsigned shard;			/* the shard that owns its memory */
	uint64_t seq;
	int64_t wall_ns;		/* CLOCK_REALTIME at the request head */
	char session[17];		/* 16 hex digits */
	char client[48];		/* client address */

	struct http_msg req;		/* request head (a copy) */
	uint8_t *req_body;		/* request body copy, chunking undone */
	size_t req_body_cap;
	size_t req_body_len;
	uint64_t req_body_total;
	uint64_t body_max;		/* the largest body-max among chosen shadows */
	bool body_over;			/* the body outgrew body_max: copy stopped */
	bool req_done;			/* request complete: shadows dispatched */
	bool queued;			/* handed to the comparator */

	/* Completion: the record goes to the comparator when the client side
	 * has let go, every leg is done, and no send still reads its memory. */
	bool client_holds;
	uint8_t legs_pending;
	uint16_t io_refs;

	uint8_t nlegs;			/* legs[0] is master */
	struct capture legs[KAGE_MAX_BACKENDS];
};

static inline double capture_elapsed_ms(const struct capture *c)
{
	return (double)(c->end_ns - c->start_ns) / 1e6;
}

#endif
