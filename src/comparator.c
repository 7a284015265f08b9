/*
 * comparator: see comparator.h.
 */
#include "comparator.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "endpoint.h"
#include "log.h"
#include "plugin.h"
#include "record.h"
#include "redact.h"
#include "shard.h"
#include "stats.h"
#include "util.h"

#define FLUSH_BYTES (64 * 1024)
#define FLUSH_NS (200 * NS_PER_MSEC)
#define MAX_HEADERS 256
/* While records flow, look at the admin sockets at most this often. */
#define ADMIN_POLL_NS (2 * NS_PER_MSEC)
/* Idle: the longest sleep (bounds a missed wake-up and admin deadlines). */
#define IDLE_POLL_MS 1000
/*
 * Busy: after the queues ran dry, nap this long before looking again,
 * with no wake-ups asked of the shards. A wake-up costs both sides a
 * context switch (about 40 us of CPU each on this class of VM, more than
 * comparing a record), so while records flow they are taken in batches of
 * a nap's worth; a nap that finds nothing ends the busy spell. Records
 * wait at most this much longer; the queues hold thousands.
 */
#define BUSY_NAP_MS 2

static const char *const error_names[BERR_KINDS] = {
	[BERR_NONE] = NULL,
	[BERR_CONNECT] = "connect",
	[BERR_TIMEOUT] = "timeout",
	[BERR_RESET] = "reset",
	[BERR_MALFORMED] = "malformed",
	[BERR_DROPPED] = "dropped",
};

static const char *const kind_names[] = {
	[DIFF_STATUS] = "status",
	[DIFF_HEADER] = "header",
	[DIFF_BODY] = "body",
	[DIFF_ERROR] = "error",
};

static const char *const change_names[] = {
	[CHANGE_VALUE] = "value",
	[CHANGE_TYPE] = "type",
	[CHANGE_ADDED] = "added",
	[CHANGE_REMOVED] = "removed",
};

/* --- the diff log ------------------------------------------------------------ */

static void flush_log(struct comparator *c)
{
	size_t off = 0;
	while (off < c->out.len && !c->log_broken) {
		ssize_t n = write(c->log_fd, c->out.p + off, c->out.len - off);
		if (n > 0) {
			off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else {
			/* EPIPE, ENOSPC, EIO: these lines are lost. A closed pipe
			 * stays closed; a full disk may recover, so try again next
			 * time. */
			log_warn("diff log: %s; %zu records lost",
				 n < 0 ? strerror(errno) : "short write", c->out_records);
			if (n < 0 && errno == EPIPE)
				c->log_broken = true;
			break;
		}
	}
	if (off < c->out.len)
		atomic_fetch_add_explicit(&c->ctr.lost, c->out_records, memory_order_relaxed);
	else
		atomic_fetch_add_explicit(&c->ctr.logged, c->out_records, memory_order_relaxed);
	jb_reset(&c->out);
	c->out_records = 0;
	c->last_flush = now_ns();
}

/* --- one record ------------------------------------------------------------------ */

struct view {
	struct diff_header hdr[MAX_HEADERS];
	struct diff_response resp;
};

static void view_of(const struct capture *cap, struct view *v)
{
	const struct http_msg *m = &cap->head;
	size_t n = MIN((size_t)m->nhdr, (size_t)MAX_HEADERS);
	for (size_t i = 0; i < n; i++) {
		v->hdr[i].name = msg_str(m, m->hdr[i].name);
		v->hdr[i].name_len = m->hdr[i].name_len;
		v->hdr[i].value = msg_str(m, m->hdr[i].value);
		v->hdr[i].value_len = m->hdr[i].value_len;
	}
	v->resp = (struct diff_response){
		.status = cap->error ? 0 : cap->status,
		.error = error_names[cap->error],
		.headers = v->hdr,
		.nheaders = m->store ? n : 0,
		.body = cap->body,
		.body_len = cap->body_len,
		.body_total = cap->body_total,
		.body_crc = cap->body_crc,
	};
}

static void write_time(struct jbuf *b, int64_t wall_ns)
{
	time_t sec = (time_t)(wall_ns / NS_PER_SEC);
	struct tm tm;
	gmtime_r(&sec, &tm);
	jb_printf(b, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900, tm.tm_mon + 1,
		  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		  (int)(wall_ns % NS_PER_SEC / NS_PER_MSEC));
}

static void write_backends(struct comparator *c, struct jbuf *b, const struct record *rec)
{
	jb_lit(b, ",\"backends\":{");
	for (unsigned i = 0; i < rec->nlegs; i++) {
		const struct capture *cap = &rec->legs[i];
		if (i)
			jb_lit(b, ",");
		jb_cstr(b, c->cfg->backends[cap->backend].name);
		if (cap->error)
			jb_lit(b, ":{\"status\":null");
		else
			jb_printf(b, ":{\"status\":%u", cap->status);
		jb_printf(b, ",\"elapsed_ms\":%.3f,\"body_bytes\":%llu,\"error\":",
			  capture_elapsed_ms(cap), (unsigned long long)cap->body_total);
		const char *err = error_names[cap->error];
		jb_str_or_null(b, err, err ? strlen(err) : 0);
		jb_lit(b, "}");
	}
	jb_lit(b, "}");
}

/* A value that may be a sensitive header's: hashed, never shown. */
static void write_value(struct jbuf *b, const struct diff_item *it, const char *v, size_t n)
{
	if (v && it->kind == DIFF_HEADER && it->where && redact_header(it->where, it->where_len)) {
		char h[REDACTED_LEN];
		redact_value(v, n, h);
		jb_str(b, h, sizeof h);
		return;
	}
	jb_str_or_null(b, v, n);
}

static void write_item(struct comparator *c, struct jbuf *b, const char *backend,
		       const struct diff_item *it, bool *first)
{
	if (!*first)
		jb_lit(b, ",");
	*first = false;
	jb_lit(b, "{\"backend\":");
	jb_cstr(b, backend);
	jb_printf(b, ",\"kind\":\"%s\",\"where\":", kind_names[it->kind]);
	if (it->where_type == WHERE_TEXT)
		jb_str(b, it->where, it->where_len);
	else if (it->where_type == WHERE_OFFSET)
		jb_printf(b, "%llu", (unsigned long long)it->offset);
	else
		jb_lit(b, "null");
	jb_lit(b, ",\"master\":");
	write_value(b, it, it->master, it->master_len);
	jb_lit(b, ",\"shadow\":");
	write_value(b, it, it->shadow, it->shadow_len);
	if (it->kind == DIFF_BODY && it->change != CHANGE_VALUE)
		jb_printf(b, ",\"change\":\"%s\"", change_names[it->change]);
	if (it->noise)
		jb_lit(b, ",\"noise\":true");
	jb_lit(b, "}");
}

/* Enough of the request to replay it (sensitive headers hashed). */
static void write_request(const struct comparator *c, struct jbuf *b, const struct record *rec)
{
	const struct http_msg *m = &rec->req;
	jb_lit(b, ",\"request\":{\"method\":");
	jb_cstr(b, http_method_name(m->method));
	jb_lit(b, ",\"target\":");
	jb_str(b, msg_str(m, m->target), m->target_len);
	jb_printf(b, ",\"version\":\"HTTP/1.%u\",\"headers\":[", m->minor);
	for (unsigned i = 0; i < m->nhdr; i++) {
		const struct http_hdr *h = &m->hdr[i];
		const char *name = msg_str(m, h->name);
		if (i)
			jb_lit(b, ",");
		jb_lit(b, "[");
		jb_str(b, name, h->name_len);
		jb_lit(b, ",");
		if (redact_header(name, h->name_len)) {
			char hv[REDACTED_LEN];
			redact_value(msg_str(m, h->value), h->value_len, hv);
			jb_str(b, hv, sizeof hv);
		} else {
			jb_str(b, msg_str(m, h->value), h->value_len);
		}
		jb_lit(b, "]");
	}
	jb_lit(b, "],\"body\":");
	size_t n = MIN(rec->req_body_len, (size_t)c->cfg->capture_max);
	jb_base64(b, rec->req_body, n);
	jb_printf(b, ",\"body_bytes\":%llu}", (unsigned long long)rec->req_body_total);
}

/* Compare master with each shadow; the reference's differences are noise. */
static bool compare(struct comparator *c, const struct record *rec)
{
	struct view mv, sv;
	view_of(&rec->legs[0], &mv);
	int ref_leg = -1;
	for (unsigned i = 1; i < rec->nlegs; i++) {
		diff_result_reset(c->res[i]);
		if ((int)rec->legs[i].backend == c->cfg->reference)
			ref_leg = (int)i;
		if (rec->legs[i].error == BERR_DROPPED && !rec->legs[i].dispatched)
			continue;	/* skipped at dispatch: nothing to compare */
		view_of(&rec->legs[i], &sv);
		diff_compare(&c->dopt, &mv.resp, &sv.resp, c->res[i]);
	}
	if (ref_leg > 0) {
		diff_mark_all_noise(c->res[ref_leg]);
		for (unsigned i = 1; i < rec->nlegs; i++)
			if ((int)i != ref_leg)
				diff_mark_noise(c->res[i], c->res[ref_leg]);
	}
	bool match = true;
	for (unsigned i = 1; i < rec->nlegs; i++) {
		unsigned b = rec->legs[i].backend;
		bool ok = diff_matches(c->res[i]);
		match &= ok;
		if (rec->legs[i].error)
			atomic_fetch_add_explicit(&c->ctr.backend_errors[b], 1, memory_order_relaxed);
		atomic_fetch_add_explicit(ok ? &c->ctr.backend_matched[b] : &c->ctr.backend_mismatched[b],
					  1, memory_order_relaxed);
	}
	return match;
}

static void count_stats(struct comparator *c, const struct record *rec, const char *endpoint)
{
	struct stats_obs obs[KAGE_MAX_BACKENDS];
	memset(obs, 0, sizeof obs);
	for (unsigned i = 0; i < rec->nlegs; i++) {
		const struct capture *cap = &rec->legs[i];
		struct stats_obs *o = &obs[cap->backend];
		o->present = true;
		o->status = cap->error ? 0 : cap->status;
		o->error = cap->error != BERR_NONE;
		o->elapsed_ns = cap->end_ns - cap->start_ns;
		o->diff = i ? c->res[i] : NULL;
	}
	stats_add(c->stats, endpoint, obs);
}

/* Keep a copy of a mismatch line for the dashboard. */
static void keep_recent(struct comparator *c, const struct jbuf *line)
{
	if (line->len > CMP_RECENT_MAX)
		return;
	struct jbuf *slot = &c->recent[c->recent_next];
	jb_reset(slot);
	jb_raw(slot, line->p, line->len);
	if (slot->oom) {
		jb_free(slot);
		return;
	}
	c->recent_next = (c->recent_next + 1) % CMP_RECENT;
	if (c->recent_count < CMP_RECENT)
		c->recent_count++;
}

/* The record as one JSON line (SPEC section 5) in c->line. */
static void write_record(struct comparator *c, const struct record *rec, const char *method,
			 const char *endpoint, bool match)
{
	const struct http_msg *m = &rec->req;
	struct jbuf *b = &c->line;
	jb_reset(b);
	jb_lit(b, "{\"time\":");
	write_time(b, rec->wall_ns);
	jb_lit(b, ",\"session\":");
	jb_cstr(b, rec->session);
	jb_lit(b, ",\"method\":");
	jb_cstr(b, method);
	jb_lit(b, ",\"target\":");
	jb_str(b, msg_str(m, m->target), m->target_len);
	jb_lit(b, ",\"endpoint\":");
	jb_cstr(b, endpoint);
	jb_lit(b, ",\"master\":");
	jb_cstr(b, c->cfg->backends[0].name);
	write_backends(c, b, rec);
	jb_printf(b, ",\"match\":%s,\"diffs\":[", match ? "true" : "false");
	bool first = true;
	for (unsigned i = 1; i < rec->nlegs; i++) {
		const char *name = c->cfg->backends[rec->legs[i].backend].name;
		for (size_t k = 0; k < diff_count(c->res[i]); k++)
			write_item(c, b, name, diff_get(c->res[i], k), &first);
	}
	jb_lit(b, "]");
	if (!match)
		write_request(c, b, rec);
	jb_lit(b, "}");
}

/* --- backends_finished ------------------------------------------------------------------ */

#define HOOK_DIFFS 1024

struct hook_scratch {
	struct kage_header req_hdr[HTTP_MAX_HEADERS];
	struct kage_header hdr[KAGE_MAX_BACKENDS][MAX_HEADERS];
	struct kage_response resp[KAGE_MAX_BACKENDS];
	struct kage_diff diffs[HOOK_DIFFS];
};

static const char *const kind_text[] = { "status", "header", "body", "error" };

static void call_hook(struct comparator *c, const struct record *rec, const char *endpoint, bool match)
{
	struct hook_scratch *hs = c->hs;
	struct kage_request req;
	plugin_request_view(&req, hs->req_hdr, &rec->req, rec->session, rec->client, rec->req_body,
			    rec->req_body_len);
	for (unsigned i = 0; i < rec->nlegs; i++) {
		const struct capture *cap = &rec->legs[i];
		const struct http_msg *hm = &cap->head;
		size_t nh = hm->store ? MIN((size_t)hm->nhdr, (size_t)MAX_HEADERS) : 0;
		for (size_t k = 0; k < nh; k++)
			hs->hdr[i][k] = (struct kage_header){ msg_str(hm, hm->hdr[k].name), hm->hdr[k].name_len,
							      msg_str(hm, hm->hdr[k].value),
							      hm->hdr[k].value_len };
		hs->resp[i] = (struct kage_response){
			.backend = c->cfg->backends[cap->backend].name,
			.status = cap->error ? 0 : cap->status,
			.error = error_names[cap->error],
			.headers = hs->hdr[i],
			.nheaders = nh,
			.body = cap->body,
			.body_len = cap->body_len,
			.body_total = cap->body_total,
			.elapsed_ms = capture_elapsed_ms(cap),
		};
	}
	size_t nd = 0;
	for (unsigned i = 1; i < rec->nlegs; i++) {
		for (size_t k = 0; k < diff_count(c->res[i]) && nd < HOOK_DIFFS; k++) {
			const struct diff_item *it = diff_get(c->res[i], k);
			hs->diffs[nd++] = (struct kage_diff){
				.backend = c->cfg->backends[rec->legs[i].backend].name,
				.kind = kind_text[it->kind],
				.where = it->where_type == WHERE_TEXT ? it->where : NULL,
				.where_len = it->where_type == WHERE_TEXT ? it->where_len : 0,
				.offset = it->where_type == WHERE_OFFSET ? (int64_t)it->offset : -1,
				.master = it->master,
				.master_len = it->master_len,
				.shadow = it->shadow,
				.shadow_len = it->shadow_len,
				.noise = it->noise,
			};
		}
	}
	struct kage_record kr = {
		.request = &req,
		.endpoint = endpoint,
		.responses = hs->resp,
		.nresponses = rec->nlegs,
		.match = match,
		.diffs = hs->diffs,
		.ndiffs = nd,
		.json = c->line.p,
		.json_len = c->line.len,
	};
	c->plugin->hooks->backends_finished(c->plugin->state, &kr);
}

static void process(struct comparator *c, const struct record *rec)
{
	bool match = compare(c, rec);
	atomic_fetch_add_explicit(&c->ctr.records, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(match ? &c->ctr.matched : &c->ctr.mismatched, 1,
				  memory_order_relaxed);
	const struct http_msg *m = &rec->req;
	const char *method = http_method_name(m->method);
	char endpoint[512];
	endpoint_of(method, strlen(method), msg_str(m, m->target), m->target_len, endpoint,
		    sizeof endpoint);
	count_stats(c, rec, endpoint);
	bool log = !match || c->cfg->diff_log_all;
	if (!log && !c->hs)
		return;
	write_record(c, rec, method, endpoint, match);
	if (c->hs && !c->line.oom)
		call_hook(c, rec, endpoint, match);
	if (!log)
		return;
	if (c->line.oom) {
		atomic_fetch_add_explicit(&c->ctr.lost, 1, memory_order_relaxed);
		return;
	}
	if (!match && c->admin)	/* only /stats shows them */
		keep_recent(c, &c->line);
	jb_raw(&c->out, c->line.p, c->line.len);
	jb_raw(&c->out, "\n", 1);
	c->out_records++;
	if (c->out.len >= FLUSH_BYTES)
		flush_log(c);
}

/* --- the loop ------------------------------------------------------------------------ */

static bool past_deadline(struct comparator *c)
{
	int64_t d = atomic_load_explicit(&c->deadline_ns, memory_order_relaxed);
	return d && now_ns() >= d;
}

static size_t drain_queues(struct comparator *c)
{
	size_t n = 0;
	for (unsigned s = 0; s < c->nshards; s++) {
		struct shard *sh = &c->shards[s];
		struct record *rec;
		/* A bounded batch per shard keeps the others from waiting. */
		for (int k = 0; k < 64 && (rec = spsc_pop(&sh->to_cmp)); k++) {
			if (past_deadline(c))
				atomic_fetch_add_explicit(&c->ctr.abandoned, 1, memory_order_relaxed);
			else
				process(c, rec);
			/* A shard holds at most as many records as this queue
			 * takes (shadow.c, RECORD_QUEUE): this cannot fail. */
			while (!spsc_push(&sh->from_cmp, rec))
				sched_yield();
			n++;
		}
	}
	return n;
}

static bool queues_empty_sc(struct comparator *c)
{
	for (unsigned s = 0; s < c->nshards; s++)
		if (!spsc_empty_sc(&c->shards[s].to_cmp))
			return false;
	return true;
}

/*
 * One poll(2) over the eventfd and the admin's sockets, then the admin's
 * work. timeout_ms 0 between batches (records waiting), IDLE_POLL_MS when
 * asleep.
 */
static void poll_events(struct comparator *c, bool wake, int timeout_ms)
{
	struct pollfd p[1 + ADMIN_POLLFDS];
	size_t n = 0;
	if (wake)
		p[n++] = (struct pollfd){ .fd = c->wake_fd, .events = POLLIN };
	size_t first_admin = n;
	if (c->admin)
		n += admin_pollfds(c->admin, p + n);
	if (poll(p, n, timeout_ms) > 0 && wake && (p[0].revents & POLLIN)) {
		uint64_t v;
		ssize_t r = read(c->wake_fd, &v, sizeof v);
		(void)r;
	}
	if (c->admin) {
		c->last_admin_poll = now_ns();
		admin_service(c->admin, p + first_admin, n - first_admin, c->last_admin_poll);
	}
}

/* Between batches: answer the admin without waiting, now and then. */
static void serve_admin_busy(struct comparator *c)
{
	if (c->admin && now_ns() - c->last_admin_poll >= ADMIN_POLL_NS)
		poll_events(c, false, 0);
}

static void sleep_until_woken(struct comparator *c)
{
	atomic_store_explicit(&c->sleeping, 1, memory_order_seq_cst);
	/* The timeout only bounds the wait should a wake-up ever be missed
	 * (and lets the admin expire its deadlines); it is not how records
	 * are found. */
	if (queues_empty_sc(c) && !atomic_load_explicit(&c->stop, memory_order_acquire))
		poll_events(c, true, IDLE_POLL_MS);
	atomic_store_explicit(&c->sleeping, 0, memory_order_relaxed);
}

static void *comparator_main(void *arg)
{
	struct comparator *c = arg;
	bool busy = false;	/* records came since the last nap */
	bool woke = true;	/* no records taken since the last sleep or nap */
	for (;;) {
		size_t n = drain_queues(c);
		if (c->out.len && (n == 0 || now_ns() - c->last_flush >= FLUSH_NS))
			flush_log(c);
		if (n) {
			if (woke)
				atomic_fetch_add_explicit(&c->ctr.batches, 1, memory_order_relaxed);
			woke = false;
			busy = true;
			serve_admin_busy(c);
			continue;
		}
		woke = true;
		if (atomic_load_explicit(&c->stop, memory_order_acquire)) {
			/* The shards are gone: one last sweep. */
			while (drain_queues(c))
				;
			flush_log(c);
			break;
		}
		if (busy) {
			busy = false;
			poll_events(c, false, BUSY_NAP_MS);
			continue;
		}
		sleep_until_woken(c);
	}
	return NULL;
}

/* --- setup ---------------------------------------------------------------------------- */

int comparator_init(struct comparator *c, const struct kage_config *cfg, struct shard *shards,
		    unsigned nshards, int log_fd, const struct plugin *plugin)
{
	memset(c, 0, sizeof *c);
	c->plugin = plugin;
	if (plugin && PLUGIN_HAS(plugin, backends_finished) && !(c->hs = malloc(sizeof *c->hs)))
		return -1;
	c->cfg = cfg;
	c->shards = shards;
	c->nshards = nshards;
	c->log_fd = log_fd;
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wake_fd < 0)
		return -1;
	c->dopt.ignore_headers = (const char *const *)cfg->ignore_headers.v;
	c->dopt.nignore_headers = cfg->ignore_headers.n;
	c->dopt.ignore_json = (const char *const *)cfg->ignore_json.v;
	c->dopt.nignore_json = cfg->ignore_json.n;
	for (unsigned i = 0; i < cfg->nbackends; i++)
		if (!(c->res[i] = diff_result_new()))
			return -1;
	const char *names[KAGE_MAX_BACKENDS];
	for (unsigned i = 0; i < cfg->nbackends; i++)
		names[i] = cfg->backends[i].name;
	struct stats_config sc = {
		.backends = names,
		.nbackends = cfg->nbackends,
		.reference = cfg->reference,
		.noise_relative = cfg->noise_relative,
		.noise_absolute = cfg->noise_absolute,
	};
	c->stats = stats_new(&sc);
	if (!c->stats)
		return -1;
	jb_init(&c->out);
	jb_init(&c->line);
	c->last_flush = now_ns();
	c->started_ns = c->last_flush;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	c->started_wall_ns = (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
	return 0;
}

void comparator_serve_admin(struct comparator *c, struct admin *admin, struct server *srv)
{
	c->admin = admin;
	c->srv = srv;
}

int comparator_start(struct comparator *c)
{
	if (pthread_create(&c->thread, NULL, comparator_main, c) != 0)
		return -1;
	pthread_setname_np(c->thread, "kage-compare");
	c->started = true;
	return 0;
}

void comparator_set_deadline(struct comparator *c, int64_t mono_ns)
{
	int64_t cur = atomic_load_explicit(&c->deadline_ns, memory_order_relaxed);
	if (!cur || mono_ns < cur)
		atomic_store_explicit(&c->deadline_ns, mono_ns ? mono_ns : 1, memory_order_relaxed);
}

void comparator_finish(struct comparator *c)
{
	if (!c->started)
		return;
	atomic_store_explicit(&c->stop, 1, memory_order_release);
	uint64_t one = 1;
	ssize_t r = write(c->wake_fd, &one, sizeof one);
	(void)r;
	pthread_join(c->thread, NULL);
	c->started = false;
}

void comparator_summary(struct comparator *c, FILE *out)
{
	if (stats_records(c->stats))
		stats_write_table(c->stats, out);
}

void comparator_destroy(struct comparator *c)
{
	for (unsigned i = 0; i < KAGE_MAX_BACKENDS; i++)
		if (c->res[i])
			diff_result_free(c->res[i]);
	if (c->stats)
		stats_free(c->stats);
	jb_free(&c->out);
	jb_free(&c->line);
	free(c->hs);
	for (unsigned i = 0; i < CMP_RECENT; i++)
		jb_free(&c->recent[i]);
	if (c->wake_fd >= 0)
		close(c->wake_fd);
}
