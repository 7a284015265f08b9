#ifndef KAGE_H
#define KAGE_H
/*
 * kage.h: the public interface of libkage, the HTTP shadow proxy.
 *
 * Two ways to use it:
 * - a plugin: a shared object exporting `kage_plugin`, which returns its
 *   hooks; load it with `kage --plugin FILE.so[:ARG]`;
 * - a program: link libkage (pkg-config kage) and call kage_run() with
 *   your hooks; the kage binary itself is kage_main() and nothing else.
 *
 * The hooks are Kage's three callbacks in C:
 *
 *   select_backends(request, set)      which backends get this request
 *   munge_headers(backend, request, h) edit request headers per backend
 *   backends_finished(record)          the whole comparison record
 *
 * Threads. select_backends and munge_headers run on the shard threads,
 * concurrently with each other: they must be thread-safe and must not
 * block (no I/O, no locks held for long): they sit on the request path.
 * backends_finished runs on the comparator thread only, one call at a
 * time, so it may keep state without locks (and may do I/O: it delays
 * only the comparator, whose queue is bounded and drops when full).
 *
 * Failure. A hook that returns an error, or answers something invalid
 * (a backend that does not exist, a header name that is not a token, a
 * value with CR, LF or NUL, a framing header kage owns), affects only the
 * shadowing of that request: the client gets master's response exactly as
 * without the plugin. kage counts every rejection. A crash in a hook is
 * the plugin's crash: kage cannot survive it.
 *
 * Lifetimes. Every pointer kage passes is valid only during the call.
 */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A plugin built against another ABI is refused at load time. */
#define KAGE_ABI_VERSION 1

/* Backends are numbered in configuration order; 0 is the master. */
#define KAGE_MAX_BACKENDS 16
typedef uint32_t kage_backend_set;	/* bit i = backend i */

struct kage_header {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};

/* A request as kage received it (headers in arrival order, hop-by-hop
 * headers included, not yet rewritten for any backend). */
struct kage_request {
	const char *method;		/* "GET", NUL-terminated */
	const char *target;		/* as sent, not NUL-terminated */
	size_t target_len;
	int version_minor;		/* HTTP/1.<minor> */
	const struct kage_header *headers;
	size_t nheaders;
	const void *body;		/* body bytes seen so far (none before the body) */
	size_t body_len;
	const char *session;		/* the session header's value (16 hex digits) when
					 * the request is shadowed, else NULL */
	const char *client_addr;	/* the client's IP address */
};

/* What a program or plugin is told about the running configuration. */
struct kage_info {
	unsigned abi;			/* KAGE_ABI_VERSION of the running kage */
	const char *version;		/* "0.1.0" */
	unsigned nbackends;
	const char *const *backends;	/* names; [0] is the master */
	unsigned threads;		/* shard threads calling the request hooks */
};

/* --- header editing (munge_headers) ------------------------------------- */

struct kage_headers;		/* the headers going to one backend */

/* Replace every header called `name` by one with `value` (add it if absent). */
int kage_headers_set(struct kage_headers *h, const char *name, const char *value);
/* Add a header after the others, keeping any of the same name. */
int kage_headers_add(struct kage_headers *h, const char *name, const char *value);
/* Remove every header called `name`; returns how many were removed. */
int kage_headers_remove(struct kage_headers *h, const char *name);
/* The value of the first header called `name`, or NULL (length in *len). */
const char *kage_headers_get(const struct kage_headers *h, const char *name, size_t *len);
size_t kage_headers_count(const struct kage_headers *h);
/* The i-th header (0 on success, -1 past the end). */
int kage_headers_at(const struct kage_headers *h, size_t i, struct kage_header *out);
/*
 * The editing functions return 0 (or a count) on success and -1 when the
 * edit is refused: a name that is not an RFC 9110 token, a value with CR,
 * LF or NUL, one of the headers kage frames itself (Host, Content-Length,
 * Transfer-Encoding, Connection and the other hop-by-hop headers), or no
 * room left. A refused edit is counted and leaves the headers unchanged.
 */

/* --- the comparison record (backends_finished) --------------------------- */

struct kage_response {
	const char *backend;		/* its name */
	int status;			/* 0 when the backend failed */
	const char *error;		/* NULL, "connect", "timeout", "reset", "malformed", "dropped" */
	const struct kage_header *headers;
	size_t nheaders;
	const void *body;		/* captured bytes, chunking undone, at most --capture-max */
	size_t body_len;
	uint64_t body_total;		/* the whole body's length */
	double elapsed_ms;
};

struct kage_diff {
	const char *backend;		/* the shadow that differs from master */
	const char *kind;		/* "status", "header", "body", "error" */
	const char *where;		/* header name or JSON Pointer; NULL otherwise */
	size_t where_len;		/* (a JSON member name may hold a NUL) */
	int64_t offset;			/* first differing byte for other bodies, else -1 */
	const char *master;		/* the two values (JSON text for JSON); NULL = absent */
	size_t master_len;
	const char *shadow;
	size_t shadow_len;
	int noise;			/* also differs on the reference: not a real change */
};

struct kage_record {
	const struct kage_request *request;
	const char *endpoint;		/* "GET /users/:id" */
	const struct kage_response *responses;	/* master first, then each shadow */
	size_t nresponses;
	int match;			/* no difference but noise */
	const struct kage_diff *diffs;
	size_t ndiffs;
	const char *json;		/* the record as kage logs it (one line, no newline) */
	size_t json_len;
};

/* --- hooks -------------------------------------------------------------------- */

struct kage_hooks {
	unsigned abi;			/* set to KAGE_ABI_VERSION */
	const char *name;		/* for logs */

	/* Once, before any request; returns the state the other hooks get
	 * (NULL is a valid state). Returning KAGE_INIT_FAILED stops kage. */
	void *(*init)(const char *arg, const struct kage_info *info);
	/* Once, after the last request and the last record. */
	void (*fini)(void *state);

	/*
	 * Which backends get this request. *set arrives holding what the
	 * flags would choose (--shadow-methods, --shadow-path, sampling); set
	 * it as you like; master is always included whatever you answer.
	 * Return 0, or a negative number to shadow nothing (counted).
	 * Called on shard threads: thread-safe, non-blocking.
	 */
	int (*select_backends)(void *state, const struct kage_request *req, kage_backend_set *set);

	/*
	 * Edit the headers of the request going to `backend` (0 = master),
	 * after --set-header / --remove-header. Return 0, or a negative
	 * number: for a shadow, that shadow is skipped for this request; for
	 * the master, the edits are discarded (counted either way; the client
	 * is never affected). Called on shard threads: thread-safe,
	 * non-blocking.
	 */
	int (*munge_headers)(void *state, unsigned backend, const struct kage_request *req,
			     struct kage_headers *headers);

	/* Every comparison record, on the comparator thread. */
	void (*backends_finished)(void *state, const struct kage_record *rec);
};

#define KAGE_INIT_FAILED ((void *)-1)

/* A plugin exports this function (the name is the contract). */
typedef const struct kage_hooks *(*kage_plugin_fn)(void);
#define KAGE_PLUGIN_SYMBOL "kage_plugin"

/*
 * Parse the command line (see `kage --help`), run the proxy until it is
 * drained by SIGTERM/SIGINT, and return the process exit status: 0 after
 * a clean drain, --help, --version or --check; 1 when it cannot run (for
 * example io_uring unavailable); 2 for a bad command line or configuration.
 * `hooks` may be NULL; a --plugin on the command line is refused when
 * hooks are given (one set of hooks per process).
 */
int kage_run(int argc, char *argv[], const struct kage_hooks *hooks);

/* kage_run(argc, argv, NULL): the kage binary. */
int kage_main(int argc, char *argv[]);

#ifdef __cplusplus
}
#endif
#endif
