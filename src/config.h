#ifndef KAGE_CONFIG_H
#define KAGE_CONFIG_H
/*
 * config: the command line and the --config file, parsed once into one
 * immutable value. After config_parse() succeeds nobody writes the struct;
 * every thread reads it without synchronisation.
 *
 * Promises:
 * - Every flag of SPEC section 2 is parsed and validated here: ranges,
 *   units, addresses (resolved with getaddrinfo, so an unresolvable host is
 *   a configuration error), backend names (unique, [A-Za-z0-9_.-]+), header
 *   names (RFC 9110 tokens) and values (no CR, LF or NUL), JSON Pointers.
 * - A bad value yields exactly one line in `err`, naming the flag as the
 *   user wrote it (`--threads: expected an integer from 1 to 1024, got "x"`)
 *   and config_parse() returns CONFIG_ERROR; the caller prints it and exits
 *   with status 2 before starting anything.
 * - --config FILE holds `key = value` lines (long names without `--`;
 *   `true`/`false` for switches; full-line `#` comments). The command line
 *   wins; a repeatable option given on the command line replaces the file's
 *   values for that option. Errors in the file name the file and line.
 * - Sizes accept a plain byte count or a binary suffix (k/K/KiB, m/M/MiB,
 *   g/G/GiB); durations accept seconds with decimals, or a `ms`/`s` suffix.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#define KAGE_VERSION        "0.1.0"
#define KAGE_MAX_BACKENDS   16	/* master + up to 15 shadows */
#define KAGE_NAME_MAX       32	/* backend names, including the NUL */

struct cfg_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[80];		/* as the user should see it: "127.0.0.1:8090", "[::1]:80" */
};

struct cfg_backend {
	char name[KAGE_NAME_MAX];
	char host[256];		/* as given */
	uint16_t port;
	struct cfg_addr addr;	/* resolved at parse time (first address) */
	bool master;
	/* Shadows only: per-shadow overrides already merged with the globals,
	 * so readers never look at two places. For the master: sample 100,
	 * timeout = backend_timeout, body_max unused. */
	double sample;		/* percent, 0..100 */
	double timeout;		/* seconds */
	uint64_t body_max;	/* bytes */
};

/* --set-header / --remove-header, in command-line order. */
struct cfg_header_edit {
	int backend;		/* index into backends[], or -1 for '*' */
	bool remove;
	char *name;		/* as given (case kept) */
	char *value;		/* NULL for remove */
};

/* A repeatable string option. */
struct cfg_list {
	char **v;
	unsigned n;
};

enum cfg_sample_key {
	SAMPLE_RANDOM = 0,
	SAMPLE_HEADER,		/* header:NAME */
	SAMPLE_COOKIE,		/* cookie:NAME */
	SAMPLE_QUERY,		/* query:NAME */
};

struct kage_config {
	struct cfg_addr listen;			/* -l, --listen (default 0.0.0.0:8090) */

	struct cfg_backend backends[KAGE_MAX_BACKENDS];	/* [0] is the master */
	unsigned nbackends;

	unsigned threads;			/* -t (default: online CPUs) */
	int *pin_cpus;				/* --pin-cpus, expanded; NULL when off */
	unsigned npin_cpus;
	unsigned ring_entries;			/* default 4096, power of two after rounding up */
	unsigned buffers;			/* provided buffers per group per shard (default 512) */
	unsigned buffer_size;			/* bytes of master-response buffers (default 64 KiB) */
	unsigned max_conns;			/* client connections per shard (default 65536) */

	double client_timeout;			/* seconds (15) */
	double backend_timeout;			/* seconds (10) */
	double shadow_timeout;			/* seconds (default = backend_timeout) */
	double drain_timeout;			/* seconds (10) */

	struct cfg_list shadow_methods;		/* uppercase method names (GET, HEAD) */
	struct cfg_list shadow_paths;		/* prefixes; empty = all */
	double shadow_sample;			/* percent (100) */
	enum cfg_sample_key sample_key;		/* --shadow-sample-key */
	char *sample_key_name;			/* NAME of header:/cookie:/query:, else NULL */
	unsigned shadow_max_inflight;		/* per shard (default 1024) */
	uint64_t shadow_body_max;		/* bytes (1 MiB) */
	uint64_t shadow_memory;			/* per shard: request copies + captures (64 MiB) */

	struct cfg_header_edit *edits;		/* --set-header / --remove-header */
	unsigned nedits;
	char *session_header;			/* "X-Kage-Session"; "" disables */

	uint64_t capture_max;			/* bytes of each response body kept (1 MiB) */
	struct cfg_list ignore_headers;		/* added to the always-ignored set */
	struct cfg_list ignore_json;		/* JSON Pointers, '*' = any one segment */
	int reference;				/* backend index of --reference, or -1 */
	double noise_relative;			/* 0.20 */
	double noise_absolute;			/* 0.0003 */
	struct cfg_list redact_headers;		/* added to the always-redacted set */

	char *diff_log;				/* path, "-" = stdout (default) */
	bool diff_log_all;
	bool admin_enabled;
	struct cfg_addr admin;			/* --admin ADDR */
	char *plugin_path;			/* --plugin FILE.so[:ARG] */
	char *plugin_arg;			/* NULL when no ":ARG" */
	char *access_log;			/* NULL = off, "-" = stderr */

	int log_level;				/* LOG_INFO; -d LOG_DEBUG; -q LOG_WARN */
	bool check;				/* --check */
	bool send_zc;				/* --send-zc: SEND_ZC for large master bodies */
};

enum config_result {
	CONFIG_OK = 0,		/* run */
	CONFIG_EXIT = 1,	/* --help / --version printed to `out`: exit 0 */
	CONFIG_ERROR = 2,	/* `err` holds one line: exit 2 */
};

/*
 * Parse argv (argv[0] is the program name). On CONFIG_OK the config is
 * complete and validated; on any result it must later be passed to
 * config_free(). `out` receives --help / --version text.
 */
enum config_result config_parse(struct kage_config *cfg, int argc, char *const argv[],
				FILE *out, char *err, size_t errlen);

/* The resolved configuration, one `key = value` per line, in --config
 * syntax (so it can be fed back with --config). Used by --check. */
void config_describe(const struct kage_config *cfg, FILE *out);

/* The --help text. */
void config_usage(FILE *out);

void config_free(struct kage_config *cfg);

/* Index of the backend called `name`, or -1. */
int config_backend_index(const struct kage_config *cfg, const char *name);

#endif
