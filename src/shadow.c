/*
 * shadow: see shadow.h.
 */
#include "shadow.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <zlib.h>

#include "client.h"
#include "comparator.h"
#include "log.h"
#include "plugin.h"
#include "record.h"
#include "shard.h"
#include "upstream.h"
#include "uring.h"
#include "util.h"

/*
 * Per shard, to the comparator and back. It also bounds the records a shard
 * holds at once (in flight, queued, being compared, on their way back), so
 * neither queue can ever be full when pushed to: a comparator that falls
 * behind shows as shadows skipped for queue_full, before they are sent, and
 * no shadow's work is thrown away after it was done.
 */
#define RECORD_QUEUE 4096

static const struct upstream_ops shadow_ops;
static const struct upstream_ops master_capture_ops;

/* --- randomness ------------------------------------------------------------- */

/* splitmix64: fast, per shard, good enough for sampling and session ids. */
static uint64_t next_random(struct shard *sh)
{
	uint64_t z = (sh->rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

int shadow_init(struct shard *sh)
{
	const struct kage_config *cfg = sh->cfg;
	if (getrandom(&sh->rng, sizeof sh->rng, 0) != sizeof sh->rng)
		sh->rng = (uint64_t)now_ns() ^ ((uint64_t)sh->id << 32);
	for (unsigned i = 0; i < cfg->shadow_methods.n; i++) {
		int m = http_method_lookup(cfg->shadow_methods.v[i]);
		if (m >= 0 && m < 64)
			sh->method_mask |= 1ULL << m;
	}
	bytepool_init(&sh->shadow_bytes, cfg->shadow_memory);
	objpool_init(&sh->record_pool, sizeof(struct record), 16);
	if (spsc_init(&sh->to_cmp, RECORD_QUEUE) < 0 || spsc_init(&sh->from_cmp, RECORD_QUEUE) < 0)
		return -1;
	sh->cmp_wake_val = 1;
	return 0;
}

/* --- records ------------------------------------------------------------------ */

static void live_add(struct shard *sh, struct record *rec)
{
	rec->prev = NULL;
	rec->next = sh->live;
	if (sh->live)
		sh->live->prev = rec;
	sh->live = rec;
}

static void live_del(struct shard *sh, struct record *rec)
{
	if (rec->prev)
		rec->prev->next = rec->next;
	else
		sh->live = rec->next;
	if (rec->next)
		rec->next->prev = rec->prev;
	rec->next = rec->prev = NULL;
}

/* Handed over (or gone): no longer in flight on this shard. */
static void retire(struct shard *sh, struct record *rec)
{
	live_del(sh, rec);
	sh->records_active--;
	CTR_SET(&sh->ctr, shadow_inflight, sh->records_active);
}

static void free_record(struct shard *sh, struct record *rec)
{
	if (!rec->queued)
		retire(sh, rec);
	msg_release(&rec->req, &sh->shadow_bytes);
	if (rec->req_body)
		bytepool_put(&sh->shadow_bytes, rec->req_body, rec->req_body_cap);
	for (unsigned i = 0; i < rec->nlegs; i++) {
		struct capture *c = &rec->legs[i];
		msg_release(&c->head, &sh->shadow_bytes);
		if (c->body)
			bytepool_put(&sh->shadow_bytes, c->body, c->body_cap);
	}
	objpool_put(&sh->record_pool, rec);
	sh->records_live--;
}

void shadow_fini(struct shard *sh)
{
	shadow_reclaim(sh);
	spsc_destroy(&sh->to_cmp);
	spsc_destroy(&sh->from_cmp);
	objpool_destroy(&sh->record_pool);
	bytepool_destroy(&sh->shadow_bytes);
}

void shadow_reclaim(struct shard *sh)
{
	struct record *rec;
	while ((rec = spsc_pop(&sh->from_cmp)))
		free_record(sh, rec);
}

static void wake_comparator(struct shard *sh)
{
	if (sh->cmp_wake_inflight || !comparator_sleeping(sh->cmp))
		return;
	sh->cmp_wake_inflight = true;
	uring_write(sh->ring, comparator_wake_fd(sh->cmp), &sh->cmp_wake_val,
		    sizeof sh->cmp_wake_val, op_data(sh, OP_CMP_WAKE));
}

static bool any_shadow_sent(const struct record *rec)
{
	for (unsigned i = 1; i < rec->nlegs; i++)
		if (rec->legs[i].dispatched)
			return true;
	return false;
}

/* Hand a finished record over, or free it when there is nothing to compare. */
static void maybe_complete(struct shard *sh, struct record *rec)
{
	if (rec->client_holds || rec->legs_pending || rec->io_refs)
		return;
	if (!any_shadow_sent(rec)) {
		free_record(sh, rec);
		return;
	}
	/* Waiting for the comparator is not in flight: a slow comparator
	 * shows as queue depth and, past the queue, as queue_full, never as
	 * shadow overload. */
	retire(sh, rec);
	rec->queued = true;
	if (!spsc_push(&sh->to_cmp, rec)) {
		/* Cannot happen while records_live <= RECORD_QUEUE; counted
		 * should that bound ever be broken. */
		CTR_INC(&sh->ctr, records_dropped);
		free_record(sh, rec);
		return;
	}
	CTR_INC(&sh->ctr, records_queued);
	wake_comparator(sh);
}

/* --- selection ----------------------------------------------------------------- */

static void skip(struct shard *sh, enum shadow_reason why, unsigned n)
{
	CTR_ADD(&sh->ctr, shadow_skipped[why], n);
}

/* The path of a target, without the scheme and authority of absolute-form. */
static const char *target_path(const char *t, size_t len, size_t *plen)
{
	if (len && t[0] != '/') {
		const char *s = memchr(t, ':', len);
		if (s && (size_t)(s - t) + 3 <= len && s[1] == '/' && s[2] == '/') {
			const char *end = t + len;
			const char *p = memchr(s + 3, '/', (size_t)(end - (s + 3)));
			if (!p) {
				*plen = 1;
				return "/";
			}
			*plen = (size_t)(end - p);
			return p;
		}
	}
	*plen = len;
	return t;
}

static bool path_selected(const struct kage_config *cfg, const struct http_msg *m)
{
	if (cfg->shadow_paths.n == 0)
		return true;
	size_t plen;
	const char *path = target_path(msg_str(m, m->target), m->target_len, &plen);
	for (unsigned i = 0; i < cfg->shadow_paths.n; i++) {
		size_t n = strlen(cfg->shadow_paths.v[i]);
		if (plen >= n && memcmp(path, cfg->shadow_paths.v[i], n) == 0)
			return true;
	}
	return false;
}

/* Find `name=value` in a list separated by `sep` (cookies, query strings). */
static const char *find_pair(const char *s, size_t len, char sep, const char *name, size_t *vlen)
{
	size_t nlen = strlen(name);
	const char *end = s + len;
	while (s < end) {
		while (s < end && (*s == ' ' || *s == sep))
			s++;
		const char *item = s;
		while (s < end && *s != sep)
			s++;
		if ((size_t)(s - item) > nlen && memcmp(item, name, nlen) == 0 && item[nlen] == '=') {
			*vlen = (size_t)(s - item) - nlen - 1;
			return item + nlen + 1;
		}
	}
	return NULL;
}

/* The sampling key's value in this request, or NULL when it has none. */
static const char *sample_key(const struct kage_config *cfg, const struct http_msg *m, size_t *len)
{
	switch (cfg->sample_key) {
	case SAMPLE_HEADER:
		return msg_header_named(m, cfg->sample_key_name, len);
	case SAMPLE_COOKIE:
		for (unsigned i = 0; i < m->nhdr; i++) {
			const struct http_hdr *h = &m->hdr[i];
			if (!span_is(msg_str(m, h->name), h->name_len, "cookie"))
				continue;
			const char *v = find_pair(msg_str(m, h->value), h->value_len, ';',
						  cfg->sample_key_name, len);
			if (v)
				return v;
		}
		return NULL;
	case SAMPLE_QUERY: {
		const char *t = msg_str(m, m->target);
		const char *q = memchr(t, '?', m->target_len);
		if (!q)
			return NULL;
		const char *end = t + m->target_len;
		const char *hash = memchr(q, '#', (size_t)(end - q));
		if (hash)
			end = hash;
		return find_pair(q + 1, (size_t)(end - q - 1), '&', cfg->sample_key_name, len);
	}
	default:
		return NULL;
	}
}

/*
 * One draw per request, shared by every shadow: with a key, the draw is a
 * hash of the key's value, so a user's requests all land on the same side
 * of each shadow's percentage. Requests without the key draw at random.
 */
static bool sampled(uint64_t draw, double percent)
{
	if (percent >= 100.0)
		return true;
	return (double)(draw % 1000000) < percent * 10000.0;
}

static void write_session(struct shard *sh, char session[17])
{
	static const char hex[] = "0123456789abcdef";
	uint64_t v = next_random(sh);
	for (int i = 15; i >= 0; i--) {
		session[i] = hex[v & 15];
		v >>= 4;
	}
	session[16] = 0;
}

/*
 * What the flags choose for this request: a backend set (bit 0, master,
 * always), and for each shadow left out, why.
 */
static kage_backend_set flag_selection(struct shard *sh, const struct http_msg *m,
				       uint8_t why[KAGE_MAX_BACKENDS])
{
	const struct kage_config *cfg = sh->cfg;
	kage_backend_set set = 1;
	enum shadow_reason all = SKIP_REASONS;
	if (m->method >= 64 || !(sh->method_mask >> m->method & 1))
		all = SKIP_METHOD;
	else if (!path_selected(cfg, m))
		all = SKIP_PATH;
	size_t klen;
	const char *key = all == SKIP_REASONS ? sample_key(cfg, m, &klen) : NULL;
	uint64_t draw = key ? fnv1a(key, klen) : next_random(sh);
	for (unsigned b = 1; b < cfg->nbackends; b++) {
		const struct cfg_backend *be = &cfg->backends[b];
		if (all != SKIP_REASONS)
			why[b] = (uint8_t)all;
		else if (!sampled(draw, be->sample))
			why[b] = SKIP_SAMPLE;
		else if (m->body == BODY_LENGTH && m->content_length > be->body_max)
			why[b] = SKIP_BODY;
		else
			set |= 1u << b;
	}
	return set;
}

/*
 * The plugin's select_backends, when there is one: it gets the flags'
 * choice and answers its own. An error or an answer naming a backend that
 * does not exist shadows nothing (counted); the client never notices.
 */
static kage_backend_set plugin_selection(struct shard *sh, struct client *cl, kage_backend_set set,
					 const char *session, uint8_t why[KAGE_MAX_BACKENDS])
{
	const struct http_msg *m = &cl->ex.req;
	kage_backend_set valid = (kage_backend_set)((1ull << sh->cfg->nbackends) - 1);
	kage_backend_set answer = set;
	struct kage_header hdr[HTTP_MAX_HEADERS];
	struct kage_request req;
	plugin_request_view(&req, hdr, m, session, cl->peer, NULL, 0);
	int rc = sh->plugin->hooks->select_backends(sh->plugin->state, &req, &answer);
	if (rc < 0) {
		CTR_INC(&sh->ctr, plugin_errors);
		answer = 1;
	} else if (answer & ~valid) {
		CTR_INC(&sh->ctr, plugin_rejected);
		answer = 1;
	}
	for (unsigned b = 1; b < sh->cfg->nbackends; b++)
		if (!(answer >> b & 1) && (set >> b & 1))
			why[b] = SKIP_PLUGIN;	/* the flags chose it; the plugin did not */
	return answer | 1;
}

struct record *shadow_begin(struct shard *sh, struct client *cl)
{
	const struct kage_config *cfg = sh->cfg;
	const struct http_msg *m = &cl->ex.req;
	unsigned nshadows = cfg->nbackends - 1;
	if (nshadows == 0)
		return NULL;
	CTR_INC(&sh->ctr, shadow_eligible);
	uint8_t why[KAGE_MAX_BACKENDS];
	kage_backend_set set = flag_selection(sh, m, why);
	char session[17];
	write_session(sh, session);
	if (sh->plugin && PLUGIN_HAS(sh->plugin, select_backends))
		set = plugin_selection(sh, cl, set, session, why);

	uint8_t chosen[KAGE_MAX_BACKENDS];
	unsigned nchosen = 0;
	uint64_t body_max = 0;
	for (unsigned b = 1; b < cfg->nbackends; b++) {
		if (set >> b & 1) {
			chosen[nchosen++] = (uint8_t)b;
			body_max = MAX(body_max, cfg->backends[b].body_max);
		} else {
			skip(sh, (enum shadow_reason)why[b], 1);
		}
	}
	if (nchosen == 0)
		return NULL;
	if (sh->records_live >= RECORD_QUEUE) {
		skip(sh, SKIP_QUEUE, nchosen);
		return NULL;
	}
	if (sh->records_active >= cfg->shadow_max_inflight) {
		skip(sh, SKIP_OVERLOAD, nchosen);
		return NULL;
	}
	struct record *rec = objpool_get(&sh->record_pool);
	if (!rec || !msg_copy(&rec->req, m, &sh->shadow_bytes)) {
		if (rec)
			objpool_put(&sh->record_pool, rec);
		skip(sh, SKIP_MEMORY, nchosen);
		return NULL;
	}
	sh->records_live++;
	sh->records_active++;
	CTR_SET(&sh->ctr, shadow_inflight, sh->records_active);
	live_add(sh, rec);
	rec->shard = sh->id;
	rec->seq = ++sh->record_seq;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	rec->wall_ns = (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
	memcpy(rec->session, session, sizeof rec->session);
	snprintf(rec->client, sizeof rec->client, "%s", cl->peer);
	rec->body_max = body_max;
	rec->client_holds = true;
	rec->nlegs = (uint8_t)(nchosen + 1);
	rec->legs_pending = rec->nlegs;
	rec->legs[0].backend = 0;
	rec->legs[0].start_ns = sh->now;
	for (unsigned i = 0; i < rec->nlegs; i++)
		rec->legs[i].rec = rec;
	for (unsigned i = 0; i < nchosen; i++)
		rec->legs[i + 1].backend = chosen[i];
	return rec;
}

void shadow_skip_upgrade(struct shard *sh)
{
	if (sh->cfg->nbackends > 1)
		skip(sh, SKIP_UPGRADE, sh->cfg->nbackends - 1);
}

void shadow_session(struct shard *sh, const struct record *rec, struct head_request_opts *o)
{
	const char *name = sh->cfg->session_header;
	if (!name || !*name)
		return;
	o->session_name = name;
	o->session_name_len = strlen(name);
	o->session = rec->session;
	o->session_len = 16;
}

/* --- the request: tee and dispatch ---------------------------------------------- */

/* Grow a shadow-pool buffer to hold `need` bytes (doubling); false if refused. */
static bool grow(struct shard *sh, uint8_t **buf, size_t *cap, size_t used, size_t need,
		 size_t limit)
{
	if (need <= *cap)
		return true;
	size_t want = MAX(need, *cap ? *cap * 2 : (size_t)4096);
	want = MIN(want, limit);
	if (want < need)
		return false;
	size_t got;
	uint8_t *nb = bytepool_get(&sh->shadow_bytes, want, &got);
	if (!nb)
		return false;
	if (*buf) {
		memcpy(nb, *buf, used);
		bytepool_put(&sh->shadow_bytes, *buf, *cap);
	}
	*buf = nb;
	*cap = got;
	return true;
}

void shadow_request_body(struct shard *sh, struct record *rec, const char *at, size_t len)
{
	rec->req_body_total += len;
	if (rec->body_over)
		return;
	if (rec->req_body_total > rec->body_max ||
	    !grow(sh, &rec->req_body, &rec->req_body_cap, rec->req_body_len,
		  rec->req_body_len + len, rec->body_max)) {
		/* Too big for every chosen shadow, or no memory: stop copying;
		 * the legs are skipped (and counted) at dispatch. */
		rec->body_over = true;
		return;
	}
	memcpy(rec->req_body + rec->req_body_len, at, len);
	rec->req_body_len += len;
}

static void mark_done(struct shard *sh, struct capture *c, enum backend_error err)
{
	if (c->done)
		return;
	c->done = true;
	c->error = (uint8_t)err;
	if (c->backend && err >= BERR_CONNECT && err <= BERR_MALFORMED)
		CTR_INC(&sh->ctr.backend[c->backend], failed[err]);
	c->end_ns = sh->now;
	c->up = NULL;
	c->rec->legs_pending--;
}

/* A leg finished; the record may be complete (and gone) afterwards. */
static void leg_done(struct shard *sh, struct capture *c, enum backend_error err)
{
	mark_done(sh, c, err);
	maybe_complete(sh, c->rec);
}

static void send_body(struct shard *sh, struct record *rec, struct upstream *up)
{
	if (rec->req.body == BODY_NONE)
		return;
	struct outref ref = { .ptr = rec, .kind = REF_RECORD };
	if (rec->req.body == BODY_CHUNKED) {
		/* The copy has no chunk boundaries left: one chunk carries it. */
		char line[24];
		int n = snprintf(line, sizeof line, "%zx\r\n", rec->req_body_len);
		if (rec->req_body_len) {
			outq_copy(sh, &up->c.out, line, (size_t)n);
			rec->io_refs++;
			outq_ref(sh, &up->c.out, rec->req_body, rec->req_body_len, ref);
			outq_static(sh, &up->c.out, "\r\n", 2);
		}
		outq_static(sh, &up->c.out, "0\r\n\r\n", 5);
	} else {
		rec->io_refs++;
		outq_ref(sh, &up->c.out, rec->req_body, rec->req_body_len, ref);
	}
}

/* munge_headers for one shadow: 0 with the head written, -1 on failure. */
static int munge(struct shard *sh, struct record *rec, unsigned b, const struct head_request_opts *o,
		 char **head, size_t *cap, size_t *len)
{
	struct kage_header hdr[HTTP_MAX_HEADERS];
	struct kage_request req;
	plugin_request_view(&req, hdr, &rec->req, rec->session, rec->client, rec->req_body,
			    rec->req_body_len);
	int rc = plugin_munge(sh->plugin, sh->kh, b, &req, &rec->req, o, &sh->bytes, head, cap, len);
	if (sh->kh->refused)
		CTR_ADD(&sh->ctr, plugin_rejected, sh->kh->refused);
	if (rc == -1)
		CTR_INC(&sh->ctr, plugin_errors);
	if (rc == -2)
		*head = NULL;
	return rc == -1 ? -1 : 0;
}

enum leg_send { LEG_SENT, LEG_PLUGIN, LEG_MEMORY, LEG_CONNECT };

/* Write the request for leg `c` and queue it on a connection to its
 * backend (a new one when `fresh`). */
static enum leg_send send_leg(struct shard *sh, struct record *rec, struct capture *c, bool fresh)
{
	unsigned b = c->backend;
	struct head_request_opts o = {
		.rules = &sh->rules[b],
		.client_addr = rec->client,
		.client_addr_len = strlen(rec->client),
		.chunked = rec->req.body == BODY_CHUNKED,
	};
	shadow_session(sh, rec, &o);
	size_t cap, len;
	char *head = NULL;
	if (sh->kh && munge(sh, rec, b, &o, &head, &cap, &len) == -1)
		return LEG_PLUGIN;
	if (!head) {
		head = bytepool_get(&sh->bytes, head_request_size(&rec->req, &o), &cap);
		if (!head)
			return LEG_MEMORY;
		len = head_request_write(&rec->req, &o, head);
	}
	struct upstream *up = upstream_get(sh, (int)b, sh->tq_shadow[b], fresh, &shadow_ops, c);
	if (!up) {
		bytepool_put(&sh->bytes, head, cap);
		CTR_INC(&sh->ctr.backend[b], errors[BERR_CONNECT]);
		return LEG_CONNECT;
	}
	c->up = up;
	struct outref ref = { .ptr = head, .arg = (uint32_t)cap, .kind = REF_BYTES };
	outq_ref(sh, &up->c.out, head, len, ref);
	send_body(sh, rec, up);
	upstream_request_queued(sh, up, rec->req.method);
	return LEG_SENT;
}

static void dispatch(struct shard *sh, struct record *rec, struct capture *c)
{
	if (!upstream_available(sh, (int)c->backend)) {
		skip(sh, SKIP_OVERLOAD, 1);
		leg_done(sh, c, BERR_DROPPED);
		return;
	}
	c->start_ns = sh->now;
	switch (send_leg(sh, rec, c, false)) {
	case LEG_SENT:
		c->dispatched = true;
		CTR_INC(&sh->ctr, shadow_sent);
		return;
	case LEG_PLUGIN:
		/* The hook failed for this shadow: it sits this request out. */
		skip(sh, SKIP_PLUGIN, 1);
		leg_done(sh, c, BERR_DROPPED);
		return;
	case LEG_MEMORY:
		skip(sh, SKIP_MEMORY, 1);
		leg_done(sh, c, BERR_DROPPED);
		return;
	case LEG_CONNECT:
		leg_done(sh, c, BERR_CONNECT);
		return;
	}
}

void shadow_request_end(struct shard *sh, struct record *rec)
{
	rec->req_done = true;
	for (unsigned i = 1; i < rec->nlegs; i++) {
		struct capture *c = &rec->legs[i];
		uint64_t max = sh->cfg->backends[c->backend].body_max;
		if (rec->body_over || rec->req_body_total > max) {
			skip(sh, rec->req_body_total > max ? SKIP_BODY : SKIP_MEMORY, 1);
			leg_done(sh, c, BERR_DROPPED);
			continue;
		}
		dispatch(sh, rec, c);
	}
}

/* The request will never be whole: nothing can be compared. */
void shadow_abort(struct shard *sh, struct record *rec)
{
	if (rec->req_done)
		return;
	skip(sh, SKIP_CLIENT, rec->nlegs - 1u);
	rec->req_done = true;	/* so nothing is dispatched later */
	for (unsigned i = 0; i < rec->nlegs; i++)
		mark_done(sh, &rec->legs[i], BERR_DROPPED);
	maybe_complete(sh, rec);
}

void shadow_client_gone(struct shard *sh, struct record *rec)
{
	/* After the request was whole the comparison goes on without the
	 * client; before, there is nothing to compare. */
	if (!rec->req_done)
		shadow_abort(sh, rec);
}

/* --- capture ------------------------------------------------------------------------ */

static void capture_body(struct shard *sh, struct capture *c, const char *at, size_t len)
{
	size_t max = sh->cfg->capture_max;
	c->body_total += len;
	c->body_crc = (uint32_t)crc32(c->body_crc, (const Bytef *)at, (uInt)len);
	size_t room = c->body_len < max ? max - c->body_len : 0;
	size_t n = MIN(len, room);
	if (!n)
		return;
	if (!c->body_cap && c->head.body == BODY_LENGTH)
		grow(sh, &c->body, &c->body_cap, 0, MIN(c->head.content_length, (uint64_t)max), max);
	/* Refused: the capture stays short; length and CRC still cover it all. */
	if (!grow(sh, &c->body, &c->body_cap, c->body_len, c->body_len + n, max))
		return;
	memcpy(c->body + c->body_len, at, n);
	c->body_len += n;
}

void shadow_master_head(struct shard *sh, struct record *rec, const struct http_msg *m)
{
	struct capture *c = &rec->legs[0];
	msg_release(&c->head, &sh->shadow_bytes);
	if (!msg_copy(&c->head, m, &sh->shadow_bytes))
		c->head.status = m->status;	/* no room for the head: keep the status */
	c->status = m->status;
}

void shadow_master_body(struct shard *sh, struct record *rec, const char *at, size_t len)
{
	if (!rec->legs[0].done)
		capture_body(sh, &rec->legs[0], at, len);
}

void shadow_master_end(struct shard *sh, struct record *rec, enum backend_error err)
{
	leg_done(sh, &rec->legs[0], err);
}

void shadow_client_done(struct shard *sh, struct record *rec)
{
	/* The exchange ended before its request was whole (master unreachable
	 * before the head went out, a refusal): nothing will dispatch the
	 * shadows now, so the record must not wait for them. */
	if (!rec->req_done)
		shadow_abort(sh, rec);
	rec->client_holds = false;
	maybe_complete(sh, rec);
}

bool shadow_master_detach(struct shard *sh, struct record *rec, struct upstream *up)
{
	struct capture *c = &rec->legs[0];
	if (c->done || !rec->req_done || up->state != UP_ACTIVE)
		return false;
	c->up = up;
	up->ops = &master_capture_ops;
	up->owner = c;
	upstream_resume(sh, up);
	return true;
}

void shadow_abort_all(struct shard *sh)
{
	struct record *rec = sh->live;
	while (rec) {
		struct record *next = rec->next;
		rec->req_done = true;
		rec->client_holds = false;
		for (unsigned i = 0; i < rec->nlegs; i++) {
			struct capture *c = &rec->legs[i];
			if (c->up) {
				upstream_abort(sh, c->up);
				c->up = NULL;
			}
		}
		for (unsigned i = 0; i < rec->nlegs; i++)
			mark_done(sh, &rec->legs[i], BERR_DROPPED);
		maybe_complete(sh, rec);
		rec = next;
	}
}

void shadow_io_done(struct shard *sh, struct record *rec)
{
	rec->io_refs--;
	maybe_complete(sh, rec);
}

/* --- shadow legs ----------------------------------------------------------------------- */

static struct capture *leg_of(struct upstream *up)
{
	return up->owner;
}

static void leg_head(struct upstream *up, struct http_msg *m)
{
	if (m->interim)
		return;
	struct capture *c = leg_of(up);
	/* The leg owns its parser: take the head as it is. */
	msg_release(&c->head, &up->c.sh->shadow_bytes);
	msg_move(&c->head, m);
	c->status = c->head.status;
}

static void leg_body(struct upstream *up, const char *at, size_t len, uint32_t bref)
{
	capture_body(up->c.sh, leg_of(up), at, len);
}

static void leg_end(struct upstream *up)
{
	struct shard *sh = up->c.sh;
	struct capture *c = leg_of(up);
	upstream_release(sh, up);
	leg_done(sh, c, BERR_NONE);
}

static void leg_tunnel(struct upstream *up, const char *at, size_t len, uint32_t bref)
{
	/* A shadow answering 101 to a request that asked for nothing. */
	struct shard *sh = up->c.sh;
	struct capture *c = leg_of(up);
	upstream_abort(sh, up);
	leg_done(sh, c, BERR_MALFORMED);
}

/*
 * A pooled connection the shadow had closed meanwhile resets at once, before
 * any answer: as for master, an idempotent request is sent again, once, on
 * a new connection, or every keep-alive race would be a "reset" record.
 * The body is the record's copy, so one is no obstacle here.
 */
static bool leg_retry(struct shard *sh, struct capture *c, const struct upstream *up,
		      enum backend_error err)
{
	struct record *rec = c->rec;
	if (err != BERR_RESET || !up->reused || up->got_bytes || c->retried ||
	    !http_method_idempotent(rec->req.method) || rec->body_over)
		return false;
	c->retried = true;
	c->up = NULL;
	CTR_INC(&sh->ctr.backend[c->backend], retries);
	return send_leg(sh, rec, c, true) == LEG_SENT;
}

static void leg_error(struct upstream *up, enum backend_error err)
{
	struct shard *sh = up->c.sh;
	struct capture *c = leg_of(up);
	if (c->backend != 0 && leg_retry(sh, c, up, err))
		return;
	leg_done(sh, c, err);
}

static const struct upstream_ops shadow_ops = {
	.on_head = leg_head,
	.on_body = leg_body,
	.on_end = leg_end,
	.on_tunnel = leg_tunnel,
	.on_error = leg_error,
};

/* Master's leg after its client let go: same capture, nobody to answer. */
static void mcap_head(struct upstream *up, struct http_msg *m)
{
	if (!m->interim)
		shadow_master_head(up->c.sh, leg_of(up)->rec, m);
}

static const struct upstream_ops master_capture_ops = {
	.on_head = mcap_head,
	.on_body = leg_body,
	.on_end = leg_end,
	.on_tunnel = leg_tunnel,
	.on_error = leg_error,
};
