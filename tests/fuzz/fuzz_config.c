/*
 * fuzz_config: the command line parser (src/config.c).
 *
 * Input: the arguments after argv[0], separated by newlines or NUL bytes
 * (at most 64). See fuzz_config_common.h for the sandbox and the checks:
 * one-line errors, and a configuration that survives config_describe() ->
 * --config file -> config_parse() unchanged.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_config_common.h"

#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	sandbox_init();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	if (!buf)
		abort();
	memcpy(buf, data, size);
	buf[size] = '\0';
	char *argv[MAX_ARGS + 2];
	int argc = 0;
	argv[argc++] = "kage";
	char *p = buf, *end = buf + size;
	while (p < end && argc <= MAX_ARGS) {
		char *q = p;
		while (q < end && *q != '\n' && *q != '\0')
			q++;
		*q = '\0';
		argv[argc++] = p;
		p = q + 1;
	}
	argv[argc] = NULL;
	parse_and_check(argc, argv);
	free(buf);
	return 0;
}
