/* Test plugin: built for an ABI this kage does not speak. */
#include "kage.h"

static const struct kage_hooks hooks = {
	.abi = KAGE_ABI_VERSION + 41,
	.name = "wrong_abi",
};

const struct kage_hooks *kage_plugin(void);

const struct kage_hooks *kage_plugin(void)
{
	return &hooks;
}
