/*
 * client: see client.h. The master exchange lives here too: the client
 * connection owns its master leg and is the owner the upstream reports to.
 */
#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "plugin.h"
#include "shadow.h"
#include "upstream.h"
#include "uring.h"
#include "util.h"

/*
 * Backpressure marks, in bytes queued and not yet sent, counted in
 * receive buffers: a connection whose peer is slow holds at most a few of
 * its shard's buffers, so a handful of slow clients cannot starve the rest.
 */
#define OUT_HIGH(sh) (4u * (sh)->buf_size[BG_MASTER])	/* to the client: stop reading master */
#define OUT_LOW(sh)  ((sh)->buf_size[BG_MASTER])
#define REQ_HIGH(sh) (8u * (sh)->buf_size[BG_CLIENT])	/* to master: stop reading the client */
#define INQ_PAUSE 4		/* pipelined buffers held before the receive pauses */
#define LINGER_NS (2 * NS_PER_SEC)

static const struct upstream_ops master_ops;

static void process_input(struct shard *sh, struct client *cl);
static void finish_exchange(struct shard *sh, struct client *cl);

/* --- lifecycle ------------------------------------------------------------- */

static void list_add(struct shard *sh, struct client *cl)
{
	cl->next = sh->clients;
	cl->prev = NULL;
	if (sh->clients)
		sh->clients->prev = cl;
	sh->clients = cl;
	sh->nclients++;
}

static void list_del(struct shard *sh, struct client *cl)
{
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		sh->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	cl->next = cl->prev = NULL;
	sh->nclients--;
}

static void on_timer(struct timer *t, void *ctx);
static void on_request_body(void *owner, const char *at, size_t len);

static void start_timer(struct shard *sh, struct client *cl)
{
	timer_start(&sh->timers, &cl->timer, sh->tq_client, sh->now, on_timer);
}

static void peer_address(struct client *cl)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	cl->peer[0] = 0;
	if (getpeername(cl->c.fd, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, cl->peer, sizeof cl->peer);
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, cl->peer,
			  sizeof cl->peer);
	cl->peer_len = (uint8_t)strlen(cl->peer);
}

void client_accept(struct shard *sh, int fd)
{
	struct client *cl = objpool_get(&sh->client_pool);
	if (!cl) {
		uring_close_fd(sh->ring, fd);
		return;
	}
	cl->c.sh = sh;
	cl->c.fd = fd;
	cl->c.kind = CONN_CLIENT;
	cl->c.group = BG_CLIENT;
	cl->state = C_IDLE;
	http_parser_init(&cl->parser, HTTP_KIND_REQUEST, &sh->bytes, on_request_body, cl);
	peer_address(cl);
	list_add(sh, cl);
	CTR_INC(&sh->ctr, accepted);
	CTR_SET(&sh->ctr, conns_open, sh->nclients);
	shard_arm_recv(sh, &cl->c, OP_CLIENT_RECV);
	start_timer(sh, cl);
	if (sh->draining)
		cl->drain = true;
}

static void drop_input(struct shard *sh, struct client *cl)
{
	while (cl->in_count) {
		shard_buf_drop(sh, cl->in[cl->in_first].bref);
		cl->in_first = (uint8_t)((cl->in_first + 1) % CLIENT_INQ);
		cl->in_count--;
	}
}

/* The master leg ends without its response reaching the client. */
static void detach_master(struct shard *sh, struct client *cl)
{
	struct upstream *up = cl->ex.up;
	if (!up)
		return;
	cl->ex.up = NULL;
	if (cl->ex.rec && shadow_master_detach(sh, cl->ex.rec, up))
		return;	/* the shadow record keeps reading master for its capture */
	upstream_abort(sh, up);
}

static void end_exchange(struct shard *sh, struct client *cl)
{
	struct exchange *ex = &cl->ex;
	detach_master(sh, cl);
	if (ex->rec)
		shadow_client_done(sh, ex->rec);
	msg_release(&ex->req, &sh->bytes);
	memset(ex, 0, sizeof *ex);
}

static void client_close(struct shard *sh, struct client *cl)
{
	if (cl->state == C_CLOSED)
		return;
	cl->state = C_CLOSED;
	timer_stop(&cl->timer);
	end_exchange(sh, cl);
	drop_input(sh, cl);
	outq_clear(sh, &cl->c.out);
	list_del(sh, cl);
	CTR_SET(&sh->ctr, conns_open, sh->nclients);
	shard_close_conn(sh, &cl->c);
	shard_client_closed(sh);
}

void client_force_close(struct shard *sh, struct client *cl)
{
	if (cl->ex.rec)
		shadow_client_gone(sh, cl->ex.rec);
	client_close(sh, cl);
}

void client_free(struct shard *sh, struct client *cl)
{
	http_parser_reset(&cl->parser);
	objpool_put(&sh->client_pool, cl);
}

/*
 * Close once everything queued has been sent: shut the write side, then
 * keep reading (and discarding) for a moment, so a client still sending
 * does not get a reset that destroys the answer it has not read yet.
 */
static void close_when_flushed(struct shard *sh, struct client *cl)
{
	cl->close_flushed = true;
	if (cl->state != C_LINGER && cl->state != C_CLOSED && outq_empty(&cl->c.out)) {
		cl->state = C_LINGER;
		drop_input(sh, cl);
		if (cl->peer_closed) {
			client_close(sh, cl);
			return;
		}
		uring_shutdown_wr(sh->ring, cl->c.fd);
		timer_start(&sh->timers, &cl->timer, sh->tq_linger, sh->now, on_timer);
		/* Lingering means reading whatever comes, whatever held it back. */
		cl->c.paused = 0;
		shard_arm_recv(sh, &cl->c, OP_CLIENT_RECV);
	}
}

/* --- answers kage makes itself ------------------------------------------------- */

static void access_log(struct shard *sh, struct client *cl);

/*
 * A short answer from kage (400, 408, 414, 431, 501, 502, 503, 504, 505).
 * The connection goes on only when the request was read whole and nothing
 * of a response went out yet; otherwise Connection: close.
 */
static void respond_error(struct shard *sh, struct client *cl, unsigned status, bool can_go_on)
{
	struct exchange *ex = &cl->ex;
	if (ex->resp_started) {
		/* Part of a response is on its way: what is queued still goes
		 * out, then the close tells the client the rest never came (a
		 * short Content-Length body, a chunked body without its end). */
		ex->close_after = true;
		detach_master(sh, cl);
		close_when_flushed(sh, cl);
		return;
	}
	bool close = !can_go_on || cl->drain || cl->peer_closed || (ex->active && !ex->req.keep_alive);
	const char *reason = http_status_reason(status);
	char buf[256];
	int n = snprintf(buf, sizeof buf,
			 "HTTP/1.1 %u %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n%u %s\n",
			 status, reason, strlen(reason) + 5, close ? "Connection: close\r\n" : "",
			 status, reason);
	if (!outq_copy(sh, &cl->c.out, buf, (size_t)n)) {
		client_close(sh, cl);
		return;
	}
	shard_mark_dirty(sh, &cl->c);
	CTR_INC(&sh->ctr, responses[status / 100]);
	if (status < 500)
		CTR_INC(&sh->ctr, client_errors);
	ex->status = (uint16_t)status;
	ex->resp_started = true;
	ex->resp_done = true;
	if (!ex->active) {
		/* An error before any exchange began (a bad head). */
		ex->active = true;
		ex->start = sh->now;
	}
	if (close) {
		ex->close_after = true;
		detach_master(sh, cl);
	}
	if (ex->req_done || close)
		finish_exchange(sh, cl);
}

/* --- the master leg ------------------------------------------------------------- */

static struct client *owner_of(struct upstream *up)
{
	return up->owner;
}

static struct shard *shard_of_client(struct client *cl);

static int master_tq(struct shard *sh)
{
	return sh->tq_backend;
}

/*
 * munge_headers for master. A hook that fails changes nothing for the
 * client: its edits are dropped and the head kage would send is sent.
 */
static char *munged_head(struct shard *sh, struct client *cl, const struct head_request_opts *o,
			 size_t *cap, size_t *len)
{
	struct exchange *ex = &cl->ex;
	struct kage_header hdr[HTTP_MAX_HEADERS];
	struct kage_request req;
	plugin_request_view(&req, hdr, &ex->req, o->session, cl->peer, NULL, 0);
	char *buf;
	int rc = plugin_munge(sh->plugin, sh->kh, 0, &req, &ex->req, o, &sh->bytes, &buf, cap, len);
	if (sh->kh->refused)
		CTR_ADD(&sh->ctr, plugin_rejected, sh->kh->refused);
	if (rc == -1)
		CTR_INC(&sh->ctr, plugin_errors);
	return rc == 0 ? buf : NULL;
}

/* Serialise the request for master and queue it on a (new) master leg. */
static bool send_request(struct shard *sh, struct client *cl, bool fresh)
{
	struct exchange *ex = &cl->ex;
	struct head_request_opts o = {
		.rules = &sh->rules[0],
		.client_addr = cl->peer,
		.client_addr_len = cl->peer_len,
		.chunked = ex->req.body == BODY_CHUNKED,
	};
	if (ex->rec)
		shadow_session(sh, ex->rec, &o);
	char *buf = NULL;
	size_t cap, len;
	if (sh->kh)
		buf = munged_head(sh, cl, &o, &cap, &len);
	if (!buf) {
		buf = bytepool_get(&sh->bytes, head_request_size(&ex->req, &o), &cap);
		if (!buf)
			return false;
		len = head_request_write(&ex->req, &o, buf);
	}
	struct upstream *up = upstream_get(sh, 0, master_tq(sh), fresh, &master_ops, cl);
	if (!up) {
		bytepool_put(&sh->bytes, buf, cap);
		return false;
	}
	struct outref ref = { .ptr = buf, .arg = (uint32_t)cap, .kind = REF_BYTES };
	outq_ref(sh, &up->c.out, buf, len, ref);
	upstream_request_queued(sh, up, ex->req.method);
	ex->up = up;
	return true;
}

static void master_head(struct upstream *up, struct http_msg *m)
{
	struct client *cl = owner_of(up);
	struct shard *sh = shard_of_client(cl);
	struct exchange *ex = &cl->ex;

	if (m->interim) {
		/* 100 Continue and friends: HTTP/1.1 clients only (RFC 9110 15.2). */
		if (!cl->http10 && cl->state != C_CLOSED) {
			char buf[1024];
			if (head_response_size(m, &(struct head_response_opts){ 0 }) <= sizeof buf) {
				size_t n = head_interim_write(m, buf);
				outq_copy(sh, &cl->c.out, buf, n);
				shard_mark_dirty(sh, &cl->c);
			}
		}
		return;
	}
	if (m->upgrade && !ex->upgrade) {
		/* A 101 nobody asked for. */
		upstream_abort(sh, up);
		ex->up = NULL;
		ex->berr = BERR_MALFORMED;
		respond_error(sh, cl, 502, false);
		return;
	}
	if (ex->rec)
		shadow_master_head(sh, ex->rec, m);
	if (cl->state == C_CLOSED)
		return;

	bool framed_by_close = m->body == BODY_CHUNKED || m->body == BODY_EOF;
	ex->chunk_out = !cl->http10 && framed_by_close;
	/* A refused upgrade (no 101) ends the connection: the parser stopped
	 * at the upgrade and what the client sent next was never meant as
	 * HTTP. */
	ex->close_after |= (cl->http10 && framed_by_close) || !ex->req.keep_alive || cl->drain ||
			   !ex->req_done || cl->peer_closed || (ex->upgrade && !m->upgrade);
	if (m->upgrade)
		ex->close_after = false;
	struct head_response_opts o = {
		.chunked = ex->chunk_out,
		.close = ex->close_after,
		.keep_alive_10 = cl->http10 && !ex->close_after,
	};
	size_t cap;
	char *buf = bytepool_get(&sh->bytes, head_response_size(m, &o), &cap);
	if (!buf) {
		respond_error(sh, cl, 503, false);
		return;
	}
	size_t len = head_response_write(m, &o, buf);
	struct outref ref = { .ptr = buf, .arg = (uint32_t)cap, .kind = REF_BYTES };
	outq_ref(sh, &cl->c.out, buf, len, ref);
	shard_mark_dirty(sh, &cl->c);
	ex->status = m->status;
	ex->resp_started = true;
	CTR_INC(&sh->ctr, responses[m->status / 100 <= 5 ? m->status / 100 : 0]);
	start_timer(sh, cl);	/* from now on the client must keep reading */

	if (m->upgrade) {
		/* 101: the client's bytes after its request, and everything after,
		 * go to master as they are. */
		cl->state = C_TUNNEL;
		CTR_INC(&sh->ctr, upgrades);
		process_input(sh, cl);
	}
}

static void send_chunk_size(struct shard *sh, struct outq *q, size_t len)
{
	char line[24];
	size_t n = fmt_hex(line, len);
	line[n++] = '\r';
	line[n++] = '\n';
	outq_copy(sh, q, line, n);
}

static void master_body(struct upstream *up, const char *at, size_t len, uint32_t bref)
{
	struct client *cl = owner_of(up);
	struct shard *sh = shard_of_client(cl);
	struct exchange *ex = &cl->ex;
	if (ex->rec)
		shadow_master_body(sh, ex->rec, at, len);
	if (cl->state == C_CLOSED)
		return;
	/* Zero-copy: the client gets the bytes from the buffer they landed in. */
	struct outref ref = { .arg = bref, .kind = REF_PBUF };
	shard_buf_hold(sh, bref);
	if (ex->chunk_out) {
		send_chunk_size(sh, &cl->c.out, len);
		outq_ref(sh, &cl->c.out, at, len, ref);
		outq_static(sh, &cl->c.out, "\r\n", 2);
	} else {
		outq_ref(sh, &cl->c.out, at, len, ref);
	}
	CTR_ADD(&sh->ctr, body_bytes_zerocopy, len);
	ex->resp_bytes += len;
	shard_mark_dirty(sh, &cl->c);
	if (cl->c.out.bytes > OUT_HIGH(sh) && !cl->master_paused) {
		cl->master_paused = true;
		upstream_pause(sh, up);
	}
}

static void master_end(struct upstream *up)
{
	struct client *cl = owner_of(up);
	struct shard *sh = shard_of_client(cl);
	struct exchange *ex = &cl->ex;
	if (cl->state == C_TUNNEL) {
		/* Master closed the tunnel: the client gets what is left, then EOF. */
		ex->up = NULL;
		close_when_flushed(sh, cl);
		return;
	}
	if (ex->rec)
		shadow_master_end(sh, ex->rec, BERR_NONE);
	ex->up = NULL;
	cl->master_paused = false;
	/* Reusable only if master also read the whole request. */
	if (ex->req_done && outq_empty(&up->c.out))
		upstream_release(sh, up);
	else
		upstream_abort(sh, up);
	if (cl->state == C_CLOSED)
		return;
	if (ex->chunk_out)
		outq_static(sh, &cl->c.out, "0\r\n\r\n", 5);
	shard_mark_dirty(sh, &cl->c);
	ex->resp_done = true;
	if (!ex->req_done) {
		/* Answered before the request was whole: the rest of the request
		 * would be read as the next one. Close after this response. */
		ex->close_after = true;
	}
	finish_exchange(sh, cl);
	process_input(sh, cl);
}

static void master_tunnel(struct upstream *up, const char *at, size_t len, uint32_t bref)
{
	struct client *cl = owner_of(up);
	struct shard *sh = shard_of_client(cl);
	if (cl->state != C_TUNNEL)
		return;
	struct outref ref = { .arg = bref, .kind = REF_PBUF };
	shard_buf_hold(sh, bref);
	outq_ref(sh, &cl->c.out, at, len, ref);
	shard_mark_dirty(sh, &cl->c);
	start_timer(sh, cl);
	if (cl->c.out.bytes > OUT_HIGH(sh) && !cl->master_paused) {
		cl->master_paused = true;
		upstream_pause(sh, up);
	}
}

/* An idempotent request without a body that met a stale pooled connection. */
static bool may_retry(const struct exchange *ex, const struct upstream *up, enum backend_error err)
{
	return err == BERR_RESET && up->reused && !up->got_bytes && !ex->retried &&
	       http_method_idempotent(ex->req.method) && ex->req.body == BODY_NONE && ex->req_done;
}

static void master_error(struct upstream *up, enum backend_error err)
{
	struct client *cl = owner_of(up);
	struct shard *sh = shard_of_client(cl);
	struct exchange *ex = &cl->ex;
	ex->up = NULL;
	cl->master_paused = false;
	if (may_retry(ex, up, err)) {
		ex->retried = true;
		CTR_INC(&sh->ctr.backend[0], retries);
		if (send_request(sh, cl, true))
			return;
	}
	ex->berr = (uint8_t)err;
	if (ex->rec)
		shadow_master_end(sh, ex->rec, err);
	if (cl->state == C_CLOSED || cl->state == C_TUNNEL) {
		if (cl->state == C_TUNNEL)
			close_when_flushed(sh, cl);
		return;
	}
	respond_error(sh, cl, err == BERR_TIMEOUT ? 504 : 502, ex->req_done);
}

/* Master took every request byte queued: read more of the client's body. */
static void master_drained(struct upstream *up)
{
	struct client *cl = owner_of(up);
	shard_resume_recv(shard_of_client(cl), &cl->c, OP_CLIENT_RECV, PAUSE_UPSTREAM_FULL);
}

static const struct upstream_ops master_ops = {
	.on_head = master_head,
	.on_body = master_body,
	.on_end = master_end,
	.on_tunnel = master_tunnel,
	.on_error = master_error,
	.on_drained = master_drained,
};

/* --- requests ----------------------------------------------------------------- */

static void on_request_head(struct shard *sh, struct client *cl)
{
	struct exchange *ex = &cl->ex;
	memset(ex, 0, sizeof *ex);
	msg_move(&ex->req, &cl->parser.msg);
	ex->active = true;
	ex->start = sh->now;
	ex->upgrade = ex->req.upgrade;
	cl->http10 = ex->req.minor == 0;
	CTR_INC(&sh->ctr, requests);
	if (cl->drain || sh->draining)
		ex->close_after = true;

	if (!ex->upgrade)
		ex->rec = shadow_begin(sh, cl);
	else
		shadow_skip_upgrade(sh);

	if (!send_request(sh, cl, false)) {
		ex->berr = BERR_CONNECT;
		if (ex->rec)
			shadow_master_end(sh, ex->rec, BERR_CONNECT);
		respond_error(sh, cl, 502, false);
		return;
	}
	cl->state = ex->req.body == BODY_NONE ? C_WAIT : C_BODY;
	if (cl->state == C_BODY)
		start_timer(sh, cl);
}

static void on_request_body(void *owner, const char *at, size_t len)
{
	struct client *cl = owner;
	struct shard *sh = shard_of_client(cl);
	struct exchange *ex = &cl->ex;
	if (ex->rec)
		shadow_request_body(sh, ex->rec, at, len);
	struct upstream *up = ex->up;
	if (!up)
		return;	/* master failed mid-body: the rest is dropped */
	struct outref ref = { .arg = cl->cur_bref, .kind = REF_PBUF };
	shard_buf_hold(sh, cl->cur_bref);
	if (ex->req.body == BODY_CHUNKED) {
		send_chunk_size(sh, &up->c.out, len);
		outq_ref(sh, &up->c.out, at, len, ref);
		outq_static(sh, &up->c.out, "\r\n", 2);
	} else {
		outq_ref(sh, &up->c.out, at, len, ref);
	}
	if (up->state == UP_ACTIVE)
		shard_mark_dirty(sh, &up->c);
	if (up->c.out.bytes > REQ_HIGH(sh))
		shard_pause_recv(sh, &cl->c, OP_CLIENT_RECV, PAUSE_UPSTREAM_FULL);
}

static void on_request_end(struct shard *sh, struct client *cl)
{
	struct exchange *ex = &cl->ex;
	ex->req_done = true;
	struct upstream *up = ex->up;
	if (up && ex->req.body == BODY_CHUNKED) {
		outq_static(sh, &up->c.out, "0\r\n\r\n", 5);
		if (up->state == UP_ACTIVE)
			shard_mark_dirty(sh, &up->c);
	}
	if (ex->rec)
		shadow_request_end(sh, ex->rec);
	if (cl->state == C_BODY || cl->state == C_HEAD)
		cl->state = C_WAIT;
	/* Waiting for master now: its timeout governs, not the client's. */
	if (!ex->resp_started)
		timer_stop(&cl->timer);
	if (ex->resp_done)
		finish_exchange(sh, cl);
}

static void finish_exchange(struct shard *sh, struct client *cl)
{
	struct exchange *ex = &cl->ex;
	bool close = ex->close_after || cl->peer_closed || cl->drain;
	if (sh->access_fd >= 0)
		access_log(sh, cl);
	cl->requests++;
	end_exchange(sh, cl);
	if (close || cl->parser.want_close) {
		close_when_flushed(sh, cl);
		return;
	}
	cl->state = C_IDLE;
	if (outq_empty(&cl->c.out))
		start_timer(sh, cl);
	/* Whatever master-side reason held the client back is gone. */
	shard_resume_recv(sh, &cl->c, OP_CLIENT_RECV, PAUSE_UPSTREAM_FULL);
}

/* --- input --------------------------------------------------------------------- */

static void parse_error(struct shard *sh, struct client *cl)
{
	unsigned status = cl->parser.error_status ? cl->parser.error_status : 400;
	log_debug("client %s: %u %s", cl->peer, status,
		  cl->parser.error_reason ? cl->parser.error_reason : "");
	if (cl->ex.active && cl->ex.rec)
		shadow_abort(sh, cl->ex.rec);
	if (cl->ex.active)
		cl->ex.rec = NULL;
	respond_error(sh, cl, status, false);
}

/* Parse what is queued. Returns false when input processing must stop. */
static bool parse_one(struct shard *sh, struct client *cl, struct inbuf *in)
{
	const char *base = shard_buf_addr(sh, in->bref);
	size_t used;
	cl->cur_bref = in->bref;
	enum http_event e = http_parse(&cl->parser, base + in->off, in->len - in->off, &used);
	in->off += (uint32_t)used;
	switch (e) {
	case HEV_MORE:
		if (!used && in->off < in->len) {
			/* No progress on bytes that are there: never spin on them. */
			log_warn("client %s: the parser made no progress; closing", cl->peer);
			client_close(sh, cl);
			return false;
		}
		if (cl->state == C_IDLE && !http_idle(&cl->parser)) {
			cl->state = C_HEAD;
			start_timer(sh, cl);
		}
		return true;
	case HEV_HEAD:
		on_request_head(sh, cl);
		/* Without a body the request ends with its head: take that end
		 * now, even when no byte is left to parse. */
		if (cl->state == C_WAIT && !cl->ex.req_done &&
		    http_parse(&cl->parser, base + in->off, 0, &used) == HEV_END)
			on_request_end(sh, cl);
		return true;
	case HEV_END:
		on_request_end(sh, cl);
		return true;
	case HEV_UPGRADE:
		return false;	/* the rest waits for master's 101 */
	case HEV_ERROR:
	default:
		parse_error(sh, cl);
		return false;
	}
}

/* Tunnel: client bytes go to master untouched. */
static void tunnel_input(struct shard *sh, struct client *cl, struct inbuf *in)
{
	struct upstream *up = cl->ex.up;
	if (up && in->off < in->len) {
		struct outref ref = { .arg = in->bref, .kind = REF_PBUF };
		shard_buf_hold(sh, in->bref);
		outq_ref(sh, &up->c.out, (const char *)shard_buf_addr(sh, in->bref) + in->off,
			 in->len - in->off, ref);
		shard_mark_dirty(sh, &up->c);
		if (up->c.out.bytes > REQ_HIGH(sh))
			shard_pause_recv(sh, &cl->c, OP_CLIENT_RECV, PAUSE_UPSTREAM_FULL);
	}
	in->off = in->len;
}

static void process_input(struct shard *sh, struct client *cl)
{
	if (cl->in_process)
		return;
	cl->in_process = true;
	while (cl->in_count) {
		struct inbuf *in = &cl->in[cl->in_first];
		if ((cl->state == C_WAIT && cl->ex.req_done) || cl->state == C_CLOSED)
			break;	/* pipelined: wait for the response before it */
		if (cl->state == C_TUNNEL)
			tunnel_input(sh, cl, in);
		else if (cl->state == C_LINGER || cl->close_flushed)
			in->off = in->len;	/* answered and closing: nothing more is read as HTTP */
		else if (!parse_one(sh, cl, in))
			break;
		if (cl->state == C_CLOSED)
			break;
		if (in->off == in->len) {
			shard_buf_drop(sh, in->bref);
			cl->in_first = (uint8_t)((cl->in_first + 1) % CLIENT_INQ);
			cl->in_count--;
		}
	}
	cl->in_process = false;
	/* Holding several pipelined buffers: stop reading until they are served. */
	if (cl->state == C_CLOSED)
		return;
	if (cl->in_count >= INQ_PAUSE)
		shard_pause_recv(sh, &cl->c, OP_CLIENT_RECV, PAUSE_PIPELINE);
	else
		shard_resume_recv(sh, &cl->c, OP_CLIENT_RECV, PAUSE_PIPELINE);
}

static void on_eof(struct shard *sh, struct client *cl)
{
	cl->peer_closed = true;
	switch (cl->state) {
	case C_WAIT:
		if (!cl->ex.active) {
			client_close(sh, cl);
			return;
		}
		/* A half-closed client still gets its response. */
		return;
	case C_TUNNEL:
		close_when_flushed(sh, cl);
		return;
	case C_HEAD:
	case C_BODY:
		/* Gone mid-request: nothing to answer. */
		if (cl->ex.rec)
			shadow_client_gone(sh, cl->ex.rec);
		client_close(sh, cl);
		return;
	default:
		if (cl->ex.active && !cl->ex.resp_done)
			return;
		client_close(sh, cl);
		return;
	}
}

void client_on_recv(struct shard *sh, struct client *cl, const struct uring_event *ev)
{
	if (!(ev->flags & UEV_MORE)) {
		cl->c.recv_armed = false;
		cl->c.inflight--;
	}
	if (ev->res > 0 && (ev->flags & UEV_BUFFER)) {
		uint32_t bref = bref_make(BG_CLIENT, uev_bid(ev));
		shard_buf_hold(sh, bref);
		if (cl->state == C_CLOSED || cl->state == C_LINGER || cl->in_count == CLIENT_INQ) {
			shard_buf_drop(sh, bref);
			if (cl->in_count == CLIENT_INQ && cl->state != C_CLOSED && cl->state != C_LINGER) {
				log_warn("client %s: input queue overflow, closing", cl->peer);
				client_close(sh, cl);
			}
		} else {
			unsigned slot = (cl->in_first + cl->in_count) % CLIENT_INQ;
			cl->in[slot] = (struct inbuf){ .bref = bref, .off = 0, .len = (uint32_t)ev->res };
			cl->in_count++;
			/* A body may take as long as it keeps coming; a head gets
			 * --client-timeout in all (started at its first byte), so a
			 * client trickling a head byte by byte is still cut off. */
			if (cl->state == C_BODY)
				start_timer(sh, cl);
			process_input(sh, cl);
		}
	} else if (ev->res == 0) {
		on_eof(sh, cl);
		return;
	} else if (ev->res == -ENOBUFS || ev->res == -ECANCELED) {
		/* re-armed below, when buffers are back, or on resume */
	} else if (ev->res < 0) {
		log_debug("client %s: recv: %s", cl->peer, strerror(-ev->res));
		if (cl->ex.rec)
			shadow_client_gone(sh, cl->ex.rec);
		client_close(sh, cl);
		return;
	}
	if (conn_wants_recv(&cl->c) && cl->state != C_CLOSED && !cl->peer_closed)
		shard_arm_recv(sh, &cl->c, OP_CLIENT_RECV);
}

void client_on_send(struct shard *sh, struct client *cl, const struct uring_event *ev)
{
	if (ev->flags & UEV_NOTIF) {
		/* A SEND_ZC's buffers are free to go. */
		cl->c.inflight--;
		if ((uint32_t)ev->res & URING_ZC_COPIED)
			CTR_INC(&sh->ctr, zc_kernel_copied);
		outq_zc_notified(sh, &cl->c.out);
		return;
	}
	bool whole;
	if (ev->flags & UEV_MORE) {
		/* SEND_ZC: the notification will come; it keeps the op counted. */
		whole = outq_sent_zc(sh, &cl->c.out, ev->res);
	} else {
		cl->c.inflight--;
		whole = outq_sent(sh, &cl->c.out, ev->res);
	}
	if (cl->state == C_CLOSED)
		return;
	if (!whole) {
		log_debug("client %s: send: %s", cl->peer, ev->res < 0 ? strerror(-ev->res) : "short");
		if (cl->ex.rec)
			shadow_client_gone(sh, cl->ex.rec);
		client_close(sh, cl);
		return;
	}
	if (!outq_empty(&cl->c.out)) {
		shard_mark_dirty(sh, &cl->c);
		start_timer(sh, cl);
	} else if (cl->close_flushed) {
		close_when_flushed(sh, cl);
		return;
	} else if (cl->state == C_IDLE) {
		start_timer(sh, cl);
	} else if (cl->state == C_WAIT && !cl->ex.resp_done) {
		timer_stop(&cl->timer);	/* waiting on master, not on the client */
	}
	if (cl->master_paused && cl->c.out.bytes < OUT_LOW(sh) && cl->ex.up) {
		cl->master_paused = false;
		upstream_resume(sh, cl->ex.up);
	}
}

static void on_timer(struct timer *t, void *ctx)
{
	struct shard *sh = ctx;
	struct client *cl = container_of(t, struct client, timer);
	switch (cl->state) {
	case C_HEAD:
	case C_BODY:
		CTR_INC(&sh->ctr, client_timeouts);
		if (cl->ex.rec)
			shadow_client_gone(sh, cl->ex.rec);
		if (!cl->ex.resp_started) {
			if (cl->ex.active)
				detach_master(sh, cl);
			respond_error(sh, cl, 408, false);
		} else {
			client_close(sh, cl);
		}
		return;
	case C_IDLE:
		if (!outq_empty(&cl->c.out) || !http_idle(&cl->parser))
			CTR_INC(&sh->ctr, client_timeouts);
		client_close(sh, cl);
		return;
	default:
		/* A client not reading its response, a silent tunnel, a linger
		 * that ran out. */
		if (cl->state != C_LINGER)
			CTR_INC(&sh->ctr, client_timeouts);
		if (cl->ex.rec)
			shadow_client_gone(sh, cl->ex.rec);
		client_close(sh, cl);
		return;
	}
}

void client_drain(struct shard *sh, struct client *cl)
{
	cl->drain = true;
	if (cl->state == C_IDLE && http_idle(&cl->parser) && cl->in_count == 0 &&
	    outq_empty(&cl->c.out))
		client_close(sh, cl);
}

/* --- access log ------------------------------------------------------------------ */

static void access_log(struct shard *sh, struct client *cl)
{
	struct exchange *ex = &cl->ex;
	if (!ex->active)
		return;
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char line[1024];
	int target_len = (int)MIN(ex->req.target_len, 512u);
	int n = snprintf(line, sizeof line,
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s \"%s %.*s HTTP/1.%u\" %u %llu %.3fms%s%s\n",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 ts.tv_nsec / 1000000, cl->peer[0] ? cl->peer : "-",
			 ex->req.store ? http_method_name(ex->req.method) : "-", target_len,
			 ex->req.store ? msg_str(&ex->req, ex->req.target) : "", ex->req.minor,
			 ex->status, (unsigned long long)ex->resp_bytes,
			 (double)(sh->now - ex->start) / 1e6,
			 ex->berr ? " master_error=" : "",
			 ex->berr == BERR_CONNECT ? "connect" : ex->berr == BERR_TIMEOUT ? "timeout" :
			 ex->berr == BERR_RESET ? "reset" : ex->berr == BERR_MALFORMED ? "malformed" : "");
	if (n > 0)
		shard_access_log(sh, line, MIN((size_t)n, sizeof line - 1));
}

static struct shard *shard_of_client(struct client *cl)
{
	return cl->c.sh;
}
