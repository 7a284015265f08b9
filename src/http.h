#ifndef KAGE_HTTP_H
#define KAGE_HTTP_H
/*
 * http: HTTP/1.x message framing over llhttp. Pure: bytes in, message
 * events and verdicts out; no I/O. Used for client requests and for master
 * and shadow responses.
 *
 * A parser accumulates each message's head (request or status line and
 * header fields) into a `struct http_msg` whose storage comes from a
 * bytepool, so a head split across any number of receive buffers is whole
 * when the HEAD event arrives. Body bytes are not copied: each body span is
 * handed to on_body() as a pointer into the caller's buffer, with chunked
 * framing already removed.
 *
 * Verdicts (requests): the strict llhttp checks plus kage's own, mapped to
 * the status a client must get (SPEC section 3): 400 (malformed, including
 * CL with TE, differing CLs, chunked not last, bad chunk sizes, bare CR or
 * LF, obs-fold lines, missing or duplicate Host in 1.1, control bytes,
 * invalid names, no version), 414/431 (request line / header block over
 * HTTP_HEAD_MAX), 501 (a transfer coding other than chunked, CONNECT), 505
 * (a version other than 1.0 and 1.1). Responses that fail any check are
 * "malformed" (HEV_ERROR with status 502).
 *
 * The parser is paused at each head and at each message end, so the
 * caller acts between messages (pipelining) with plain control flow.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llhttp.h"

struct bytepool;

#define HTTP_HEAD_MAX    (64 * 1024)	/* request line + header block */
#define HTTP_MAX_HEADERS 256

/* Headers kage treats specially, recognised once while parsing. */
enum hdr_id {
	HDR_OTHER = 0,
	HDR_HOST,
	HDR_CONTENT_LENGTH,
	HDR_TRANSFER_ENCODING,
	HDR_CONNECTION,
	HDR_KEEP_ALIVE,
	HDR_PROXY_CONNECTION,
	HDR_TE,
	HDR_TRAILER,
	HDR_UPGRADE,
	HDR_EXPECT,
	HDR_X_FORWARDED_FOR,
	HDR_CONTENT_TYPE,
	HDR_CONTENT_ENCODING,
	HDR_DATE,
};

#define HDR_F_HOP (1u << 0)	/* hop-by-hop: by name or named by Connection */

struct http_hdr {
	uint32_t name;		/* offsets into msg->store */
	uint32_t value;
	uint32_t value_len;	/* value without surrounding whitespace */
	uint16_t name_len;
	uint8_t id;		/* enum hdr_id */
	uint8_t flags;		/* HDR_F_* */
};

enum http_body {
	BODY_NONE = 0,		/* no body (or HEAD/1xx/204/304 response) */
	BODY_LENGTH,		/* Content-Length bytes */
	BODY_CHUNKED,
	BODY_EOF,		/* response delimited by the connection's close */
};

/* A message head. Strings are (offset, length) pairs into `store`. */
struct http_msg {
	char *store;		/* strings grow up from 0, hdr[] grows down from cap */
	size_t cap;
	uint32_t used;
	struct http_hdr *hdr;	/* hdr[0..nhdr) sits at the end of store */
	uint16_t nhdr;

	uint8_t method;		/* llhttp_method_t (requests) */
	uint8_t major, minor;
	uint16_t status;	/* responses */
	uint32_t target, target_len;	/* requests */
	uint32_t reason, reason_len;	/* responses */

	enum http_body body;
	uint64_t content_length;
	bool keep_alive;	/* this hop may carry another message after this one */
	bool upgrade;		/* request asks for Upgrade, or 101 response */
	bool expect_continue;	/* Expect: 100-continue */
	bool interim;		/* 1xx response other than 101 */
	uint8_t host_count;
};

static inline const char *msg_str(const struct http_msg *m, uint32_t off)
{
	return m->store + off;
}

/* Value of the first header with this id, or NULL (length in *len). */
const char *msg_header(const struct http_msg *m, enum hdr_id id, size_t *len);
/* Value of the first header named `name` (any case), or NULL. */
const char *msg_header_named(const struct http_msg *m, const char *name, size_t *len);
/* Give the store back to its pool (the msg becomes empty). */
void msg_release(struct http_msg *m, struct bytepool *pool);
/* Copy a head into storage from `pool` (false when the pool refuses). */
bool msg_copy(struct http_msg *to, const struct http_msg *from, struct bytepool *pool);
/* Move the head out of a parser's msg into `to` (the parser's becomes empty). */
void msg_move(struct http_msg *to, struct http_msg *from);

enum http_kind { HTTP_KIND_REQUEST, HTTP_KIND_RESPONSE };

enum http_event {
	HEV_MORE = 0,		/* all input consumed, message not finished */
	HEV_HEAD,		/* parser->msg holds a complete head */
	HEV_END,		/* message complete (body, if any, delivered) */
	HEV_UPGRADE,		/* 101 / Upgrade accepted: the rest is tunnel bytes */
	HEV_ERROR,		/* parser->error_status says which answer */
};

typedef void (*http_body_fn)(void *owner, const char *at, size_t len);

struct http_parser {
	llhttp_t ll;
	struct http_msg msg;
	struct bytepool *pool;	/* where msg storage comes from */
	http_body_fn on_body;
	void *owner;

	const char *input;	/* the buffer being parsed */
	const char *input_end;
	uint32_t head_bytes;	/* bytes of the current head so far */
	uint32_t field_start;	/* store offsets of the header being received */
	uint32_t value_start;
	uint16_t error_status;	/* 400, 413, 414, 431, 501, 502, 505 with HEV_ERROR */
	const char *error_reason;	/* short text for logs */
	uint8_t kind;		/* enum http_kind */
	uint8_t req_method;	/* responses: the request's method (HEAD means no body) */
	char last_byte;		/* last byte of the previous input (line checks) */
	bool after_lf;		/* the previous input ended a head line */
	bool in_message;	/* between message begin and message complete */
	bool in_head;		/* between message begin and headers complete */
	bool head_ready;	/* llhttp paused at headers complete */
	bool end_ready;		/* llhttp paused at message complete */
	bool end_pending;	/* HEAD was returned; END is owed on the next call */
	bool field_open;	/* a header name is being received */
	bool in_trailers;
	bool seen_version;
	bool seen_field;	/* a header field started: too-long heads are 431, else 414 */
	bool want_close;	/* request said Connection: close (stop after it) */
	bool keep_alive;	/* the last head allowed another message after it
				 * (kept here: the owner may move the head away) */
	bool oom;		/* the bytepool refused head storage */
};

void http_parser_init(struct http_parser *p, enum http_kind kind, struct bytepool *pool,
		      http_body_fn on_body, void *owner);
/* Forget everything, keep kind/pool/callbacks; releases the msg store. */
void http_parser_reset(struct http_parser *p);
/* Responses: the method of the request this response answers. */
void http_parser_expect(struct http_parser *p, uint8_t method);

/*
 * Parse from `data`. Returns at the first HEV_HEAD, HEV_END, HEV_UPGRADE or HEV_ERROR
 * event, or HEV_MORE when all of `len` was consumed; *used is how many
 * bytes were consumed. Body spans are delivered to on_body during the call.
 * After HEV_END the parser is ready for the next message (pipelining);
 * the caller may reset or release msg first.
 */
enum http_event http_parse(struct http_parser *p, const char *data, size_t len, size_t *used);

/*
 * The peer closed the connection: ends a close-delimited response
 * (HEV_END), is a no-op between messages (HEV_MORE), or an error in the
 * middle of a message (HEV_ERROR).
 */
enum http_event http_finish(struct http_parser *p);

/* True between messages (nothing of a next message received yet). */
bool http_idle(const struct http_parser *p);

const char *http_method_name(uint8_t method);
bool http_method_idempotent(uint8_t method);
/* llhttp_method_t for an uppercase name, or -1. */
int http_method_lookup(const char *name);
const char *http_status_reason(unsigned status);

#endif
