#ifndef KAGE_HEAD_H
#define KAGE_HEAD_H
/*
 * head: writes a parsed head for the next hop. kage frames each hop
 * itself (SPEC section 3), so heads are rewritten, never passed through:
 *
 * - to a backend: "METHOD target HTTP/1.1", the client's headers minus the
 *   hop-by-hop ones and minus what this backend's rules remove or set,
 *   the rules' headers, X-Forwarded-For with the client's address appended,
 *   the session header on shadowed requests, Transfer-Encoding: chunked
 *   when the body is chunked, and Upgrade + Connection: upgrade for a
 *   WebSocket handshake. Host is kept as the client sent it (an HTTP/1.0
 *   request without one gets the backend's).
 * - to the client: "HTTP/1.1 status reason", master's headers minus the
 *   hop-by-hop ones, then kage's framing for this client: chunked or not,
 *   Connection: close / keep-alive.
 *
 * Pure: writes into a caller's buffer sized by the matching _size().
 */
#include <stdbool.h>
#include <stddef.h>

#include "http.h"

struct kage_config;

struct head_rule {
	const char *name;	/* as configured */
	size_t name_len;
	const char *value;	/* NULL: remove */
	size_t value_len;
};

/* The header rules for one backend, built once from the configuration. */
struct head_rules {
	struct head_rule *rule;	/* unique names, '*' rules merged in */
	unsigned n;
	const char *host;	/* "host:port" of the backend, for Host-less 1.0 */
	size_t host_len;
};

int head_rules_build(struct head_rules *r, const struct kage_config *cfg, int backend);
void head_rules_free(struct head_rules *r);

struct head_request_opts {
	const struct head_rules *rules;
	const char *client_addr;	/* appended to X-Forwarded-For */
	size_t client_addr_len;
	const char *session_name;	/* NULL: no session header */
	size_t session_name_len;
	const char *session;		/* 16 hex digits */
	size_t session_len;
	bool chunked;			/* the body will be sent chunked */
};

size_t head_request_size(const struct http_msg *m, const struct head_request_opts *o);
size_t head_request_write(const struct http_msg *m, const struct head_request_opts *o, char *out);

/* The pieces of head_request_write, for munge_headers (plugin.c): the
 * request line; whether a client header passes as is; the
 * X-Forwarded-For value; kage's framing headers and the blank line. */
size_t head_request_line(const struct http_msg *m, char *out);
bool head_passes_to_backend(const struct http_msg *m, const struct http_hdr *h,
			    const struct head_request_opts *o);
size_t head_xff_size(const struct http_msg *m, const struct head_request_opts *o);
size_t head_xff_write(const struct http_msg *m, const struct head_request_opts *o, char *out);
size_t head_request_framing(const struct http_msg *m, const struct head_request_opts *o, char *out);

struct head_response_opts {
	bool chunked;		/* kage chunks the body for this client */
	bool close;		/* Connection: close (kage closes after) */
	bool keep_alive_10;	/* an HTTP/1.0 client kept alive: say so */
};

size_t head_response_size(const struct http_msg *m, const struct head_response_opts *o);
size_t head_response_write(const struct http_msg *m, const struct head_response_opts *o, char *out);

/* An interim 1xx response, passed to HTTP/1.1 clients as is (minus hop-by-hop). */
size_t head_interim_write(const struct http_msg *m, char *out);

#endif
