#ifndef KAGE_ADMIN_H
#define KAGE_ADMIN_H
/*
 * admin: the --admin HTTP/1.1 listener (/metrics, /stats, /healthz, the
 * dashboard). It is served by the comparator thread from its poll() loop,
 * never by a shard: an operator scraping metrics costs the request path
 * nothing but relaxed loads of counters the shards keep anyway.
 *
 * This module is the HTTP part only; what a path answers is the
 * handler's business (metrics.c). Its promises:
 * - Nothing blocks: sockets are non-blocking, a response that does not fit
 *   the socket buffer is kept and written when poll() says so.
 * - Bounded: at most ADMIN_MAX_CONNS connections, a request head of at most
 *   ADMIN_HEAD_MAX bytes (431 beyond), ADMIN_HEAD_TIMEOUT to send it,
 *   ADMIN_WRITE_TIMEOUT without progress reading the answer, and at most
 *   ADMIN_OUT_MAX bytes of answers waiting for slow readers (503 beyond).
 *   When every slot is taken, the oldest connection that is not being
 *   answered makes room, so a slowloris cannot lock operators out.
 * - GET and HEAD only (405 otherwise), one request per connection
 *   (`Connection: close`): scrapers and the dashboard reconnect cheaply,
 *   and there is no keep-alive state to get wrong. Closing is graceful
 *   (shutdown, then drain what the client still sends), so a client that
 *   sent more than we read still gets its answer instead of a reset.
 * - No authentication: bind it to loopback or a private interface.
 */
#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "jbuf.h"
#include "util.h"

struct cfg_addr;
struct admin;

#define ADMIN_MAX_CONNS		64
#define ADMIN_HEAD_MAX		8192
#define ADMIN_HEAD_TIMEOUT	(5 * NS_PER_SEC)
#define ADMIN_WRITE_TIMEOUT	(10 * NS_PER_SEC)
#define ADMIN_LINGER_TIMEOUT	(1 * NS_PER_SEC)
#define ADMIN_OUT_MAX		(32u << 20)
/* poll() entries admin_pollfds() may fill: the listener and every connection. */
#define ADMIN_POLLFDS		(1 + ADMIN_MAX_CONNS)

/* What the handler fills for one GET (HEAD is answered the same, bodiless). */
struct admin_reply {
	int status;			/* 200 unless the handler says otherwise */
	const char *content_type;	/* "text/plain; charset=utf-8" unless set */
	const char *headers;		/* extra header lines, each ending in CRLF, or NULL */
	struct jbuf *body;		/* append the body here */
};

/* path: the request target without its query, NUL-terminated. */
typedef void (*admin_handler)(void *arg, const char *path, struct admin_reply *reply);

/*
 * Bind and listen (before any thread starts, so a port in use is a
 * configuration error). Logs "admin on http://HOST:PORT/". NULL on error,
 * logged naming --admin.
 */
struct admin *admin_open(const struct cfg_addr *addr, admin_handler handler, void *arg);
/* Close the listener and every connection. NULL is fine. */
void admin_close(struct admin *a);

/* The port it listens on (the kernel's choice for port 0). */
uint16_t admin_port(const struct admin *a);

/*
 * Fill up to ADMIN_POLLFDS entries for poll(); returns how many. The
 * caller polls them (with its own descriptors) and hands the same entries,
 * revents filled, to admin_service(), which accepts, reads, answers,
 * writes and expires connections past their deadline.
 */
size_t admin_pollfds(struct admin *a, struct pollfd *p);
void admin_service(struct admin *a, const struct pollfd *p, size_t n, int64_t now);

/* Connections open, for tests and the metrics. */
unsigned admin_conns(const struct admin *a);

#endif
