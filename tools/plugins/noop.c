/*
 * Hooks that select and munge but change nothing: the cost of calling
 * hooks on the request path, measured by `make bench` against no plugin.
 */
#include "kage.h"

static int noop_select(void *state, const struct kage_request *req, kage_backend_set *set)
{
	return 0;
}

static int noop_munge(void *state, unsigned backend, const struct kage_request *req,
		      struct kage_headers *headers)
{
	return 0;
}

static const struct kage_hooks hooks = {
	.abi = KAGE_ABI_VERSION,
	.name = "noop",
	.select_backends = noop_select,
	.munge_headers = noop_munge,
};

const struct kage_hooks *kage_plugin(void);

const struct kage_hooks *kage_plugin(void)
{
	return &hooks;
}
