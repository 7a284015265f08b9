#ifndef KAGE_PLUGIN_H
#define KAGE_PLUGIN_H
/*
 * plugin: the hooks of kage.h, loaded from --plugin FILE.so[:ARG] or given
 * by a program that links libkage, and everything kage does to call them
 * safely: the ABI check at load, read-only views of requests and records,
 * and an editable header list that refuses what kage must not send.
 *
 * The loaded hooks and their state never change after startup, so shard
 * threads and the comparator read them without synchronisation.
 */
#include <stdbool.h>
#include <stddef.h>

#include "http.h"
#include "kage.h"

struct kage_config;

struct plugin {
	const struct kage_hooks *hooks;	/* NULL: no plugin */
	void *state;
	void *dl;			/* dlopen handle, when loaded from a file */
	struct kage_info info;
	const char *names[KAGE_MAX_BACKENDS];
};

/*
 * Load the hooks (`inproc` from a program, else cfg->plugin_path) and call
 * their init. Returns 0, or -1 with one line in err (exit 2: refused ABI,
 * missing symbol, init failure).
 */
int plugin_load(struct plugin *p, const struct kage_config *cfg, const struct kage_hooks *inproc,
		char *err, size_t errlen);
void plugin_unload(struct plugin *p);

static inline bool plugin_has(const struct plugin *p, size_t hook_offset)
{
	return p && p->hooks && *(void *const *)((const char *)p->hooks + hook_offset);
}
#define PLUGIN_HAS(p, hook) plugin_has((p), offsetof(struct kage_hooks, hook))

/* A request view over a parsed head (hdr: room for m->nhdr entries). */
void plugin_request_view(struct kage_request *req, struct kage_header *hdr, const struct http_msg *m,
			 const char *session, const char *client, const void *body, size_t body_len);

/* --- the editable header list ------------------------------------------------ */

#define KH_MAX_HEADERS 320
#define KH_ARENA (32 * 1024)

struct kage_headers {
	struct kage_header h[KH_MAX_HEADERS];
	size_t n;
	char arena[KH_ARENA];		/* copies of what the hook wrote */
	size_t used;
	unsigned refused;		/* edits refused in this call */
};

void kh_reset(struct kage_headers *kh);
/* Append without checks (kage's own headers, before the hook runs). */
void kh_push(struct kage_headers *kh, const char *name, size_t nlen, const char *value, size_t vlen);
/* Bytes the list takes as "Name: value\r\n" lines. */
size_t kh_bytes(const struct kage_headers *kh);

struct head_request_opts;
struct bytepool;

/*
 * munge_headers for one backend: the headers kage would send (after the
 * --set-header/--remove-header rules, with X-Forwarded-For and the session
 * header) become a list the hook edits; the request head is then written
 * from the list plus kage's own framing, into a buffer from `pool`.
 * Returns 0 (head in *out, *cap, *len), -1 when the hook failed, -2 when
 * the pool refused memory. `kh` is scratch (one per shard).
 */
int plugin_munge(const struct plugin *p, struct kage_headers *kh, unsigned backend,
		 const struct kage_request *req, const struct http_msg *m,
		 const struct head_request_opts *o, struct bytepool *pool, char **out, size_t *cap,
		 size_t *len);

#endif
