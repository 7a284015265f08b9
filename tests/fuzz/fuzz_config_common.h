#ifndef KAGE_FUZZ_CONFIG_COMMON_H
#define KAGE_FUZZ_CONFIG_COMMON_H
/*
 * What fuzz_config and fuzz_config_file share: a sandbox for config_parse()
 * and the checks on its results.
 *
 * The sandbox: config_parse() resolves backend hosts with getaddrinfo()
 * and reads --config files with fopen(). A fuzzer must not send DNS
 * queries or read /dev/zero for hours, so this file defines both for the
 * target's process: getaddrinfo() resolves numeric addresses (and
 * "localhost", as 127.0.0.1) only, and while config_parse() runs, fopen()
 * opens only the memfd files the harness writes (and /dev/null); anything
 * else is "not found". (libFuzzer itself writes its corpus and artifacts
 * with fopen: outside config_parse() it is the real one.)
 *
 * The checks:
 * - CONFIG_ERROR leaves exactly one non-empty line in `err`;
 * - CONFIG_OK: config_describe()'s text, fed back as a --config file,
 *   parses again (CONFIG_OK) to the same description;
 * - config_free() always (LeakSanitizer sees what it misses).
 */
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz_check.h"

/* --- the sandbox ----------------------------------------------------------------- */

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	static int (*real)(const char *, const char *, const struct addrinfo *,
			   struct addrinfo **);
	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
	struct addrinfo h = hints ? *hints : (struct addrinfo){ 0 };
	if (node && strcmp(node, "localhost") == 0)
		node = h.ai_family == AF_INET6 ? "::1" : "127.0.0.1";
	h.ai_flags |= AI_NUMERICHOST;
	return real(node, service, &h, res);
}

static bool sandboxed;

FILE *fopen(const char *path, const char *mode)
{
	static FILE *(*real)(const char *, const char *);
	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "fopen");
	if (sandboxed && strncmp(path, "/proc/self/fd/", 14) != 0 && strcmp(path, "/dev/null") != 0) {
		errno = ENOENT;
		return NULL;
	}
	return real(path, mode);
}

/* --- helpers ------------------------------------------------------------------------ */

static enum config_result parse(struct kage_config *cfg, int argc, char **argv, char *err,
				size_t errlen);

static FILE *devnull;

static void sandbox_init(void)
{
	devnull = fopen("/dev/null", "w");
	if (!devnull)
		abort();
}

static FILE *devnull_out(void)
{
	return devnull;
}

/* A memfd holding `text`; its path in path[] ("/proc/self/fd/N"). */
static int file_of(const char *text, size_t len, char *path, size_t pathlen)
{
	int fd = memfd_create("kage-fuzz-config", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n <= 0)
			abort();
		off += (size_t)n;
	}
	snprintf(path, pathlen, "/proc/self/fd/%d", fd);
	return fd;
}

static char *describe(const struct kage_config *cfg, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);
	if (!f)
		abort();
	config_describe(cfg, f);
	fclose(f);
	return text;
}

static FILE *devnull_out(void);

static enum config_result parse(struct kage_config *cfg, int argc, char **argv, char *err,
				size_t errlen)
{
	sandboxed = true;
	enum config_result rc = config_parse(cfg, argc, argv, devnull_out(), err, errlen);
	sandboxed = false;
	return rc;
}

/*
 * Known bugs of older src/ a long run steps over (fuzz_known(), fuzz_check.h):
 *   describe-space  config_describe() writes values with leading or
 *                   trailing white space as they are; the file reader trims
 *                   them (a value of only spaces becomes empty, and may
 *                   not parse at all): arguments with white space at either
 *                   end, or right after their '=', skip the round trip.
 */

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r';
}

/* Does an argument have white space at either end or right after '='? */
static bool ws_edges(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		size_t n = strlen(a);
		const char *eq = strchr(a, '=');
		if (n && (is_ws(a[0]) || is_ws(a[n - 1])))
			return true;
		if (eq && is_ws(eq[1]))
			return true;
	}
	return false;
}

static void check_err(enum config_result rc, const char *err, size_t errlen)
{
	size_t n = strnlen(err, errlen);
	FUZZ_CHECK(n < errlen, "err is not NUL-terminated");
	if (rc == CONFIG_ERROR) {
		FUZZ_CHECK(n > 0, "an error without a message");
		FUZZ_CHECK(!memchr(err, '\n', n), "a message of more than one line: %s", err);
	}
}

/* Parse argv; on success the description must survive a trip through a
 * --config file. */
static void parse_and_check(int argc, char **argv)
{
	struct kage_config cfg;
	char err[512];
	enum config_result rc = parse(&cfg, argc, argv, err, sizeof err);
	check_err(rc, err, sizeof err);
	if (rc == CONFIG_OK && !(fuzz_known("describe-space") && ws_edges(argc, argv))) {
		size_t len1, len2;
		char *d1 = describe(&cfg, &len1);
		char path[64];
		int fd = file_of(d1, len1, path, sizeof path);
		char *argv2[] = { "kage", "--config", path, NULL };
		struct kage_config again;
		char err2[512];
		enum config_result rc2 = parse(&again, 3, argv2, err2, sizeof err2);
		check_err(rc2, err2, sizeof err2);
		FUZZ_CHECK(rc2 == CONFIG_OK, "the description does not parse again: %s\n%s", err2, d1);
		char *d2 = describe(&again, &len2);
		if (len1 != len2 || memcmp(d1, d2, len1) != 0) {
			size_t i = 0;
			while (i < len1 && i < len2 && d1[i] == d2[i])
				i++;
			size_t ls = i;
			while (ls && d1[ls - 1] != '\n')
				ls--;
			FUZZ_CHECK(false, "the description changes through --config, from line \"%.*s\" "
			           "(now \"%.*s\")", (int)(strcspn(d1 + ls, "\n")), d1 + ls,
			           (int)(strcspn(d2 + ls, "\n")), d2 + ls);
		}
		free(d2);
		config_free(&again);
		close(fd);
		free(d1);
	}
	config_free(&cfg);
}

#endif
