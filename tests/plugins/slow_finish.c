/* Test plugin: a backends_finished that is slow, so the comparator falls
 * behind and its queues fill. ARG: "MS" or "MS:FLAGFILE". Every record
 * costs MS milliseconds of sleep, while FLAGFILE exists (always without
 * one), so a test can make the comparator catch up before it stops kage.
 * fini writes the number of records seen to FLAGFILE.count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kage.h"

struct state {
	long ms;
	char flag[4096];
	unsigned long long seen;
};

static void *slow_init(const char *arg, const struct kage_info *info)
{
	struct state *st = calloc(1, sizeof *st);
	if (!st)
		return KAGE_INIT_FAILED;
	st->ms = 20;
	if (arg && *arg) {
		char *end;
		st->ms = strtol(arg, &end, 10);
		if (*end == ':')
			snprintf(st->flag, sizeof st->flag, "%s", end + 1);
	}
	return st;
}

static void slow_finished(void *state, const struct kage_record *rec)
{
	struct state *st = state;
	st->seen++;
	if (st->flag[0] && access(st->flag, F_OK) != 0)
		return;
	struct timespec ts = { st->ms / 1000, (st->ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void slow_fini(void *state)
{
	struct state *st = state;
	if (st->flag[0]) {
		char path[4200];
		snprintf(path, sizeof path, "%s.count", st->flag);
		FILE *f = fopen(path, "w");
		if (f) {
			fprintf(f, "%llu\n", st->seen);
			fclose(f);
		}
	}
	free(st);
}

static const struct kage_hooks hooks = {
	.abi = KAGE_ABI_VERSION,
	.name = "slow_finish",
	.init = slow_init,
	.fini = slow_fini,
	.backends_finished = slow_finished,
};

const struct kage_hooks *kage_plugin(void);

const struct kage_hooks *kage_plugin(void)
{
	return &hooks;
}
