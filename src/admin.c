/*
 * admin: see admin.h.
 */
#include "admin.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* Accepts per admin_service() call: a burst waits for the next round
 * instead of holding the comparator. */
#define ACCEPT_BATCH 16
/* Out of descriptors: how long the listener is left out of poll(). The
 * comparator polls at least once a second, so a retry comes within that. */
#define ACCEPT_BACKOFF_NS (100 * 1000000LL)
/* The handler's scratch buffer is kept between requests up to this size. */
#define SCRATCH_KEEP (1u << 20)

enum aconn_state {
	AC_FREE = 0,
	AC_READ,	/* collecting the request head */
	AC_WRITE,	/* the response does not fit the socket yet */
	AC_LINGER,	/* answered and shut down for writing: wait for the client's EOF */
};

struct aconn {
	int fd;
	enum aconn_state state;
	int64_t born;		/* accept time: the oldest is evicted first */
	int64_t deadline;	/* of the current state */
	size_t inlen;
	size_t outoff;
	struct jbuf out;
	char in[ADMIN_HEAD_MAX];
};

struct admin {
	int lfd;
	uint16_t port;
	admin_handler handler;
	void *arg;
	unsigned nconns;
	size_t pending;			/* answer bytes held by AC_WRITE connections */
	int64_t accept_resume;		/* out of descriptors: listener off until then */
	bool accept_starved;		/* warned for this episode */
	struct jbuf body;		/* the handler's scratch, reused */
	int map[ADMIN_POLLFDS];		/* pollfd entry -> connection (-1: listener) */
	struct aconn c[ADMIN_MAX_CONNS];
};

/* --- connections ------------------------------------------------------------ */

static void conn_close(struct admin *a, struct aconn *c)
{
	if (c->state == AC_WRITE)
		a->pending -= c->out.len;
	close(c->fd);
	jb_free(&c->out);
	c->fd = -1;
	c->state = AC_FREE;
	a->nconns--;
}

/* Answered: stop writing, read until the client closes (or a deadline),
 * so bytes we never read cannot turn our close into a reset that destroys
 * the response on its way. */
static void conn_linger(struct admin *a, struct aconn *c, int64_t now)
{
	if (c->state == AC_WRITE)
		a->pending -= c->out.len;
	jb_free(&c->out);
	shutdown(c->fd, SHUT_WR);
	c->state = AC_LINGER;
	c->deadline = now + ADMIN_LINGER_TIMEOUT;
}

static void conn_write(struct admin *a, struct aconn *c, int64_t now)
{
	while (c->outoff < c->out.len) {
		ssize_t n = send(c->fd, c->out.p + c->outoff, c->out.len - c->outoff,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->outoff += (size_t)n;
			/* A reader that makes progress keeps its connection. */
			if (c->state == AC_WRITE)
				c->deadline = now + ADMIN_WRITE_TIMEOUT;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (c->state != AC_WRITE) {
				c->state = AC_WRITE;
				c->deadline = now + ADMIN_WRITE_TIMEOUT;
				a->pending += c->out.len;
			}
			return;
		} else {
			conn_close(a, c);
			return;
		}
	}
	conn_linger(a, c, now);
}

/* --- requests ------------------------------------------------------------------ */

static const char *reason_of(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	case 503: return "Service Unavailable";
	default: return "Internal Server Error";
	}
}

static void respond(struct admin *a, struct aconn *c, const struct admin_reply *r, bool head,
		    int64_t now)
{
	int status = r->status;
	const char *p = r->body->p, *text = NULL;
	size_t len = r->body->len;
	if (r->body->oom) {
		status = 500;
		text = "out of memory\n";
	} else if (a->pending + len > ADMIN_OUT_MAX) {
		/* Slow readers already hold too much: answer, but not with this. */
		status = 503;
		text = "busy: too many slow readers\n";
	}
	if (text) {
		p = text;
		len = strlen(text);
	}
	jb_reset(&c->out);
	jb_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n", status,
		  reason_of(status),
		  r->content_type && !text ? r->content_type : "text/plain; charset=utf-8", len);
	if (r->headers && !text)
		jb_lit(&c->out, r->headers);
	jb_lit(&c->out, "Cache-Control: no-store\r\nConnection: close\r\n\r\n");
	if (!head && len)
		jb_raw(&c->out, p, len);
	if (c->out.oom) {
		conn_close(a, c);
		return;
	}
	c->outoff = 0;
	conn_write(a, c, now);
}

static void respond_error(struct admin *a, struct aconn *c, int status, const char *text,
			  const char *headers, bool head, int64_t now)
{
	jb_reset(&a->body);
	jb_lit(&a->body, text);
	struct admin_reply r = { .status = status, .headers = headers, .body = &a->body };
	respond(a, c, &r, head, now);
}

static bool is_token(const char *s, size_t n)
{
	if (!n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 'A' || s[i] > 'Z')
			return false;
	return true;
}

/* The request line of a complete head, answered. Headers are not needed:
 * every path is a GET without parameters. */
static void handle(struct admin *a, struct aconn *c, int64_t now)
{
	char *line = c->in;
	char *eol = memchr(line, '\n', c->inlen);
	*eol = 0;
	if (eol > line && eol[-1] == '\r')
		eol[-1] = 0;
	char *sp1 = strchr(line, ' ');
	char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') ||
	    (strcmp(sp2 + 1, "HTTP/1.1") && strcmp(sp2 + 1, "HTTP/1.0")) || sp1[1] != '/') {
		respond_error(a, c, 400, "bad request\n", NULL, false, now);
		return;
	}
	*sp1 = *sp2 = 0;
	bool get = !strcmp(line, "GET"), head = !strcmp(line, "HEAD");
	if (!get && !head) {
		if (is_token(line, (size_t)(sp1 - line)))
			respond_error(a, c, 405, "method not allowed: GET or HEAD\n",
				      "Allow: GET, HEAD\r\n", false, now);
		else
			respond_error(a, c, 400, "bad request\n", NULL, false, now);
		return;
	}
	char *path = sp1 + 1;
	path[strcspn(path, "?#")] = 0;
	jb_reset(&a->body);
	struct admin_reply r = { .status = 200, .body = &a->body };
	a->handler(a->arg, path, &r);
	respond(a, c, &r, head, now);
	if (a->body.cap > SCRATCH_KEEP)
		jb_free(&a->body);
}

static const char *head_end(const char *p, size_t len, size_t from)
{
	for (size_t i = from; i < len; i++) {
		if (p[i] != '\n')
			continue;
		if (i >= 1 && p[i - 1] == '\n')
			return p + i;
		if (i >= 3 && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r')
			return p + i;
	}
	return NULL;
}

static void conn_read(struct admin *a, struct aconn *c, int64_t now)
{
	size_t before = c->inlen;
	ssize_t n = recv(c->fd, c->in + c->inlen, sizeof c->in - c->inlen, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(a, c);
		return;
	}
	c->inlen += (size_t)n;
	if (head_end(c->in, c->inlen, before ? before - 1 : 0))
		handle(a, c, now);
	else if (c->inlen == sizeof c->in)
		respond_error(a, c, 431, "request head over 8 KiB\n", NULL, false, now);
}

/* After the answer: discard what the client still sends until its EOF. */
static void conn_drain(struct admin *a, struct aconn *c)
{
	char scratch[4096];
	for (int i = 0; i < 16; i++) {
		ssize_t n = recv(c->fd, scratch, sizeof scratch, MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		break;
	}
	conn_close(a, c);
}

static void conn_event(struct admin *a, struct aconn *c, short revents, int64_t now)
{
	switch (c->state) {
	case AC_READ:
		if (revents & (POLLIN | POLLHUP | POLLERR))
			conn_read(a, c, now);
		break;
	case AC_WRITE:
		if (revents & (POLLOUT | POLLHUP | POLLERR))
			conn_write(a, c, now);
		break;
	case AC_LINGER:
		if (revents & (POLLIN | POLLHUP | POLLERR))
			conn_drain(a, c);
		break;
	case AC_FREE:
		break;
	}
}

/* --- accepting ------------------------------------------------------------------- */

/* Every slot taken: close the oldest connection that is not being
 * answered (a slow or idle client), so operators always get in. */
static bool make_room(struct admin *a)
{
	struct aconn *victim = NULL;
	for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++) {
		struct aconn *c = &a->c[i];
		if (c->state == AC_READ || c->state == AC_LINGER)
			if (!victim || c->born < victim->born)
				victim = c;
	}
	if (!victim)
		return false;
	conn_close(a, victim);
	return true;
}

static struct aconn *free_slot(struct admin *a)
{
	for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++)
		if (a->c[i].state == AC_FREE)
			return &a->c[i];
	return NULL;
}

static void accept_some(struct admin *a, int64_t now)
{
	for (int k = 0; k < ACCEPT_BATCH; k++) {
		if (a->nconns == ADMIN_MAX_CONNS && !make_room(a))
			return;
		int fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			/* EMFILE and kin: the listener stays readable, so polling
			 * it again would spin; leave it out of poll() a while. */
			if (!a->accept_starved)
				log_warn("--admin: accept: %s; retrying every %d ms", strerror(errno),
					 (int)(ACCEPT_BACKOFF_NS / 1000000));
			a->accept_starved = true;
			a->accept_resume = now + ACCEPT_BACKOFF_NS;
			return;
		}
		a->accept_starved = false;
		struct aconn *c = free_slot(a);
		c->fd = fd;
		c->state = AC_READ;
		c->born = now;
		c->deadline = now + ADMIN_HEAD_TIMEOUT;
		c->inlen = 0;
		c->outoff = 0;
		jb_init(&c->out);
		a->nconns++;
	}
}

static bool all_writing(const struct admin *a)
{
	if (a->nconns < ADMIN_MAX_CONNS)
		return false;
	for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++)
		if (a->c[i].state != AC_WRITE)
			return false;
	return true;
}

/* --- the poll interface --------------------------------------------------------------- */

size_t admin_pollfds(struct admin *a, struct pollfd *p)
{
	size_t n = 0;
	if (!all_writing(a) && !a->accept_resume) {
		a->map[n] = -1;
		p[n++] = (struct pollfd){ .fd = a->lfd, .events = POLLIN };
	}
	for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++) {
		const struct aconn *c = &a->c[i];
		if (c->state == AC_FREE)
			continue;
		a->map[n] = (int)i;
		p[n++] = (struct pollfd){ .fd = c->fd,
					  .events = c->state == AC_WRITE ? POLLOUT : POLLIN };
	}
	return n;
}

static void expire(struct admin *a, int64_t now)
{
	for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++) {
		struct aconn *c = &a->c[i];
		if (c->state != AC_FREE && now >= c->deadline)
			conn_close(a, c);
	}
}

void admin_service(struct admin *a, const struct pollfd *p, size_t n, int64_t now)
{
	bool acceptable = false;
	for (size_t i = 0; i < n; i++) {
		if (!p[i].revents)
			continue;
		if (a->map[i] < 0)
			acceptable = true;
		else
			conn_event(a, &a->c[a->map[i]], p[i].revents, now);
	}
	expire(a, now);
	if (a->accept_resume && now >= a->accept_resume) {
		a->accept_resume = 0;
		acceptable = true;	/* try once: the backlog may hold a scrape */
	}
	if (acceptable)
		accept_some(a, now);
}

/* --- setup ------------------------------------------------------------------------------ */

static int listen_on(const struct cfg_addr *addr)
{
	int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 ||
	    listen(fd, ADMIN_MAX_CONNS) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static uint16_t bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	if (ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&ss)->sin_port);
}

struct admin *admin_open(const struct cfg_addr *addr, admin_handler handler, void *arg)
{
	int fd = listen_on(addr);
	if (fd < 0) {
		log_error("--admin %s: %s", addr->text, strerror(-fd));
		return NULL;
	}
	struct admin *a = calloc(1, sizeof *a);
	if (!a) {
		close(fd);
		log_error("--admin: out of memory");
		return NULL;
	}
	a->lfd = fd;
	a->port = bound_port(fd);
	a->handler = handler;
	a->arg = arg;
	for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++)
		a->c[i].fd = -1;
	jb_init(&a->body);
	char host[80];
	snprintf(host, sizeof host, "%s", addr->text);
	char *colon = strrchr(host, ':');
	if (colon)
		*colon = 0;
	log_info("admin on http://%s:%u/ (/metrics, /stats, /healthz)", *host ? host : "0.0.0.0",
		 a->port);
	return a;
}

void admin_close(struct admin *a)
{
	if (!a)
		return;
	for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++)
		if (a->c[i].state != AC_FREE)
			conn_close(a, &a->c[i]);
	close(a->lfd);
	jb_free(&a->body);
	free(a);
}

uint16_t admin_port(const struct admin *a)
{
	return a->port;
}

unsigned admin_conns(const struct admin *a)
{
	return a->nconns;
}
