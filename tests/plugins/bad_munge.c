/* Test plugin: munge_headers tries edits kage must refuse (an invalid
 * name, a value with CRLF, a framing header), makes one valid edit, and
 * fails outright on targets containing "fail". */
#include <string.h>

#include "kage.h"

static int bad_munge(void *state, unsigned backend, const struct kage_request *req,
		     struct kage_headers *h)
{
	if (memmem(req->target, req->target_len, "fail", 4))
		return -1;
	kage_headers_set(h, "Bad Header", "x");
	kage_headers_set(h, "X-Injected", "a\r\nContent-Length: 0");
	kage_headers_remove(h, "Content-Length");
	kage_headers_set(h, "Transfer-Encoding", "chunked");
	kage_headers_set(h, "X-Munged", backend ? "shadow" : "master");
	return 0;
}

static const struct kage_hooks hooks = {
	.abi = KAGE_ABI_VERSION,
	.name = "bad_munge",
	.munge_headers = bad_munge,
};

const struct kage_hooks *kage_plugin(void);

const struct kage_hooks *kage_plugin(void)
{
	return &hooks;
}
