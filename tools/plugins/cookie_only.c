/*
 * Shadow only requests that carry a given cookie (say, users who opted
 * into a beta), leaving the flags' choice otherwise as it is.
 *
 *   --plugin build/release/plugins/cookie_only.so:beta       (any value)
 *   --plugin build/release/plugins/cookie_only.so:beta=yes   (that value)
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kage.h"

struct state {
	char name[128];
	char value[128];	/* "" = any value */
};

static void *cookie_init(const char *arg, const struct kage_info *info)
{
	struct state *st = calloc(1, sizeof *st);
	if (!st)
		return KAGE_INIT_FAILED;
	const char *a = arg && *arg ? arg : "kage_shadow";
	const char *eq = strchr(a, '=');
	size_t n = eq ? (size_t)(eq - a) : strlen(a);
	if (n == 0 || n >= sizeof st->name || (eq && strlen(eq + 1) >= sizeof st->value)) {
		free(st);
		return KAGE_INIT_FAILED;
	}
	memcpy(st->name, a, n);
	if (eq)
		strcpy(st->value, eq + 1);
	return st;
}

static void cookie_fini(void *state)
{
	free(state);
}

/* Does "a=1; b=2" hold name (with value, when one is asked for)? */
static int has_cookie(const struct state *st, const char *s, size_t len)
{
	size_t nlen = strlen(st->name), vlen = strlen(st->value);
	const char *end = s + len;
	while (s < end) {
		while (s < end && (*s == ' ' || *s == ';'))
			s++;
		const char *item = s;
		while (s < end && *s != ';')
			s++;
		size_t ilen = (size_t)(s - item);
		if (ilen > nlen && memcmp(item, st->name, nlen) == 0 && item[nlen] == '=') {
			if (!vlen)
				return 1;
			if (ilen - nlen - 1 == vlen && memcmp(item + nlen + 1, st->value, vlen) == 0)
				return 1;
		}
	}
	return 0;
}

static int cookie_select(void *state, const struct kage_request *req, kage_backend_set *set)
{
	const struct state *st = state;
	for (size_t i = 0; i < req->nheaders; i++) {
		const struct kage_header *h = &req->headers[i];
		if (h->name_len == 6 && strncasecmp(h->name, "cookie", 6) == 0 &&
		    has_cookie(st, h->value, h->value_len))
			return 0;	/* keep what the flags chose */
	}
	*set = 1;	/* master only */
	return 0;
}

static const struct kage_hooks hooks = {
	.abi = KAGE_ABI_VERSION,
	.name = "cookie_only",
	.init = cookie_init,
	.fini = cookie_fini,
	.select_backends = cookie_select,
};

const struct kage_hooks *kage_plugin(void);

const struct kage_hooks *kage_plugin(void)
{
	return &hooks;
}
