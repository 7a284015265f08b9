#ifndef KAGE_SHADOW_H
#define KAGE_SHADOW_H
/*
 * shadow: the shadow path of one shard (SPEC section 4).
 *
 * - Selection, per request: --shadow-methods, --shadow-path, then each
 *   shadow's sample (random, or by a hash of a header, cookie or query
 *   parameter so one user's requests are shadowed all or none), its
 *   body-max, and the shard's bounds (--shadow-max-inflight,
 *   --shadow-memory). Every shadow not sent is counted by reason.
 * - The request body streams to master untouched and is teed into a
 *   bounded copy; when the request is complete, each chosen shadow gets
 *   the same method, target, headers (after its own rules) and body over
 *   its own keep-alive pool.
 * - Capture: master's response is copied as it streams to the client (the
 *   client's bytes still leave from the receive buffer); each shadow's
 *   response is captured and its buffers recycled at once. Status, head,
 *   up to --capture-max body bytes, total length and CRC of the whole body,
 *   elapsed time, error.
 * - Isolation: nothing here can delay or change what the client gets. A
 *   shadow's slowness, failure or silence ends only its own leg; a client
 *   that goes away after its request does not cancel the comparison.
 * - Handoff: when master and every shadow are done the record goes to the
 *   comparator queue; a full queue drops it (counted), never blocks.
 */
#include <stdbool.h>
#include <stddef.h>

#include "counters.h"
#include "head.h"
#include "http.h"

struct shard;
struct client;
struct record;
struct upstream;

int shadow_init(struct shard *sh);
void shadow_fini(struct shard *sh);

/* At a request head: a record if the request is shadowed, else NULL. */
struct record *shadow_begin(struct shard *sh, struct client *cl);
void shadow_skip_upgrade(struct shard *sh);
/* The session header that master gets for this record. */
void shadow_session(struct shard *sh, const struct record *rec, struct head_request_opts *o);

void shadow_request_body(struct shard *sh, struct record *rec, const char *at, size_t len);
/* The request is complete: send it to the chosen shadows. */
void shadow_request_end(struct shard *sh, struct record *rec);
/* The request turned out bad or the client left before finishing it. */
void shadow_abort(struct shard *sh, struct record *rec);
/* The client went away (any time): the comparison goes on if it can. */
void shadow_client_gone(struct shard *sh, struct record *rec);

void shadow_master_head(struct shard *sh, struct record *rec, const struct http_msg *m);
void shadow_master_body(struct shard *sh, struct record *rec, const char *at, size_t len);
void shadow_master_end(struct shard *sh, struct record *rec, enum backend_error err);
/*
 * The client side is letting go of master before its response ended: the
 * record takes the upstream over to finish its capture (true), or there is
 * nothing left to capture (false: the caller closes it).
 */
bool shadow_master_detach(struct shard *sh, struct record *rec, struct upstream *up);
/* The client side holds the record no more. */
void shadow_client_done(struct shard *sh, struct record *rec);

/* A send that carried record memory (a request body) completed. */
void shadow_io_done(struct shard *sh, struct record *rec);
/* Past the drain deadline: end every leg still running (as dropped). */
void shadow_abort_all(struct shard *sh);
/* Take back records the comparator is done with. */
void shadow_reclaim(struct shard *sh);

#endif
