/*
 * kage: the library's entry point, shared by the kage binary and programs
 * that link libkage.
 */
#include "kage.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "server.h"

int kage_main(int argc, char *argv[])
{
	return kage_run(argc, argv, NULL);
}

int kage_run(int argc, char *argv[], const struct kage_hooks *hooks)
{
	struct kage_config cfg;
	char err[512];
	int status;
	switch (config_parse(&cfg, argc, argv, stdout, err, sizeof err)) {
	case CONFIG_EXIT:
		status = 0;
		break;
	case CONFIG_ERROR:
		fprintf(stderr, "kage: %s\n", err);
		status = 2;
		break;
	default:
		if (cfg.check) {
			config_describe(&cfg, stdout);
			status = 0;
		} else {
			status = server_run(&cfg, hooks);
		}
		break;
	}
	fflush(stdout);
	config_free(&cfg);
	return status;
}
