/*
 * Append every comparison record to a file of its own format, one
 * tab-separated line each, for tools that do not read JSON:
 *
 *   session  endpoint  match  backend:status:elapsed_ms:bytes ...  diffs
 *
 *   --plugin build/release/plugins/record_file.so:/var/log/kage/records.tsv
 *
 * backends_finished runs on the comparator thread only: no locks needed.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kage.h"

static void *file_init(const char *arg, const struct kage_info *info)
{
	if (!arg || !*arg)
		return KAGE_INIT_FAILED;
	FILE *f = fopen(arg, "a");
	if (!f)
		return KAGE_INIT_FAILED;
	return f;
}

static void file_fini(void *state)
{
	fclose(state);
}

static void file_finished(void *state, const struct kage_record *rec)
{
	FILE *f = state;
	fprintf(f, "%s\t%s\t%s", rec->request->session, rec->endpoint, rec->match ? "match" : "differ");
	for (size_t i = 0; i < rec->nresponses; i++) {
		const struct kage_response *r = &rec->responses[i];
		fprintf(f, "\t%s:%d:%.3f:%llu", r->backend, r->status, r->elapsed_ms,
			(unsigned long long)r->body_total);
	}
	fprintf(f, "\t%zu\n", rec->ndiffs);
	fflush(f);
}

static const struct kage_hooks hooks = {
	.abi = KAGE_ABI_VERSION,
	.name = "record_file",
	.init = file_init,
	.fini = file_fini,
	.backends_finished = file_finished,
};

const struct kage_hooks *kage_plugin(void);

const struct kage_hooks *kage_plugin(void)
{
	return &hooks;
}
