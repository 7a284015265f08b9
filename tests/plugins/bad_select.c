/* Test plugin: select_backends names a backend that does not exist (bit
 * 15), or fails on targets containing "fail". kage must refuse and count. */
#include <string.h>

#include "kage.h"

static int bad_select(void *state, const struct kage_request *req, kage_backend_set *set)
{
	if (memmem(req->target, req->target_len, "fail", 4))
		return -1;
	*set |= 1u << 15;
	return 0;
}

static const struct kage_hooks hooks = {
	.abi = KAGE_ABI_VERSION,
	.name = "bad_select",
	.select_backends = bad_select,
};

const struct kage_hooks *kage_plugin(void);

const struct kage_hooks *kage_plugin(void)
{
	return &hooks;
}
