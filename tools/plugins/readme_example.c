/*
 * The original Kage README's example, as a kage plugin:
 *
 *   on_select_backends: GET requests go to production and sandbox,
 *                       everything else to production only;
 *   on_munge_headers:   X-Kage-Sandbox: 1 on requests to the sandbox
 *                       (X-Kage-Session is kage's --session-header);
 *   on_backends_finished: compare the two bodies.
 *
 *   kage --master production=... --shadow sandbox=... \
 *        --plugin build/release/plugins/readme_example.so:shadow=sandbox,out=/tmp/cmp.log
 *
 * ARG: shadow=NAME (default sandbox), out=PATH (default stderr).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kage.h"

struct state {
	unsigned sandbox;	/* backend index of the shadow */
	FILE *out;
};

static void *example_init(const char *arg, const struct kage_info *info)
{
	char shadow[64] = "sandbox", out[512] = "";
	for (const char *p = arg; p && *p;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n > 7 && strncmp(p, "shadow=", 7) == 0 && n - 7 < sizeof shadow)
			snprintf(shadow, sizeof shadow, "%.*s", (int)(n - 7), p + 7);
		else if (n > 4 && strncmp(p, "out=", 4) == 0 && n - 4 < sizeof out)
			snprintf(out, sizeof out, "%.*s", (int)(n - 4), p + 4);
		p = end ? end + 1 : NULL;
	}
	struct state *st = calloc(1, sizeof *st);
	if (!st)
		return KAGE_INIT_FAILED;
	for (unsigned i = 1; i < info->nbackends; i++)
		if (strcmp(info->backends[i], shadow) == 0)
			st->sandbox = i;
	if (!st->sandbox) {
		fprintf(stderr, "readme_example: no shadow called %s\n", shadow);
		free(st);
		return KAGE_INIT_FAILED;
	}
	st->out = *out ? fopen(out, "a") : stderr;
	if (!st->out) {
		free(st);
		return KAGE_INIT_FAILED;
	}
	setvbuf(st->out, NULL, _IOLBF, 0);
	return st;
}

static void example_fini(void *state)
{
	struct state *st = state;
	if (st->out != stderr)
		fclose(st->out);
	free(st);
}

static int example_select(void *state, const struct kage_request *req, kage_backend_set *set)
{
	struct state *st = state;
	*set = strcmp(req->method, "GET") == 0 ? 1u | 1u << st->sandbox : 1u;
	return 0;
}

static int example_munge(void *state, unsigned backend, const struct kage_request *req,
			 struct kage_headers *headers)
{
	struct state *st = state;
	if (backend == st->sandbox)
		return kage_headers_set(headers, "X-Kage-Sandbox", "1");
	return 0;
}

/* compare(responses[:production][:data], responses[:sandbox][:data]) */
static void example_finished(void *state, const struct kage_record *rec)
{
	struct state *st = state;
	const struct kage_response *a = &rec->responses[0], *b = NULL;
	for (size_t i = 1; i < rec->nresponses; i++)
		b = &rec->responses[i];
	if (!b)
		return;
	int same = a->body_total == b->body_total && a->body_len == b->body_len &&
		   memcmp(a->body, b->body, a->body_len) == 0;
	fprintf(st->out, "%s %.*s %s: %s %d/%d, %.2f ms vs %.2f ms\n", rec->request->session,
		(int)rec->request->target_len, rec->request->target, same ? "same" : "differ",
		b->backend, a->status, b->status, a->elapsed_ms, b->elapsed_ms);
}

static const struct kage_hooks hooks = {
	.abi = KAGE_ABI_VERSION,
	.name = "readme_example",
	.init = example_init,
	.fini = example_fini,
	.select_backends = example_select,
	.munge_headers = example_munge,
	.backends_finished = example_finished,
};

const struct kage_hooks *kage_plugin(void);

const struct kage_hooks *kage_plugin(void)
{
	return &hooks;
}
