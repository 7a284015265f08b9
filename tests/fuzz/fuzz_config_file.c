/*
 * fuzz_config_file: the --config file reader (src/config.c).
 *
 * Input: the file's contents; kage is run as `kage --config FILE`. See
 * fuzz_config_common.h for the sandbox and the checks: one-line errors
 * (naming the file and line), and a configuration that survives
 * config_describe() -> --config file -> config_parse() unchanged.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz_config_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	sandbox_init();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	int fd = file_of((const char *)data, size, path, sizeof path);
	char *argv[] = { "kage", "--config", path, NULL };
	parse_and_check(3, argv);
	close(fd);
	return 0;
}
