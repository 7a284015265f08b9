/*
 * A program that runs the kage proxy with its own hooks, linked against an
 * installed libkage through pkg-config (see test_plugins.py):
 *
 *   cc embed.c $(pkg-config --cflags --libs --static kage) -o embed
 *   ./embed COUNT_FILE --master ... --shadow ...
 *
 * Its hooks tag every backend request with X-Embedded and count the
 * comparison records, writing the count to COUNT_FILE at exit.
 */
#include <stdio.h>

#include <kage.h>

static unsigned long records;
static const char *count_file;

static int tag(void *state, unsigned backend, const struct kage_request *req,
	       struct kage_headers *h)
{
	(void)state;
	(void)req;
	return kage_headers_set(h, "X-Embedded", backend ? "shadow" : "master");
}

static void count(void *state, const struct kage_record *rec)
{
	(void)state;
	(void)rec;
	records++;	/* comparator thread only: no lock */
}

static void done(void *state)
{
	(void)state;
	FILE *f = fopen(count_file, "w");
	if (f) {
		fprintf(f, "%lu\n", records);
		fclose(f);
	}
}

static const struct kage_hooks hooks = {
	.abi = KAGE_ABI_VERSION,
	.name = "embed",
	.fini = done,
	.munge_headers = tag,
	.backends_finished = count,
};

int main(int argc, char *argv[])
{
	if (argc < 2) {
		fprintf(stderr, "usage: embed COUNT_FILE KAGE_ARGS...\n");
		return 2;
	}
	count_file = argv[1];
	argv[1] = argv[0];
	return kage_run(argc - 1, argv + 1, &hooks);
}
