/*
 * test_config: config_parse, config_describe, config_usage.
 *
 * Only numeric addresses and localhost are used, so nothing here needs a
 * network or a resolver beyond /etc/hosts.
 */
#include "config.h"
#include "log.h"

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>

#include <dirent.h>
#include <math.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MASTER "-m", "prod=127.0.0.1:8080"

static char tmpdir[64];
static char err[512];
static char *out_text;		/* what config_parse wrote to `out` */
static struct kage_config cfg;

/* ---- helpers ------------------------------------------------------------- */

/* Parse a NULL-terminated argument list; argv[0] is added. `out` is captured
 * into out_text, which the next call replaces. */
static enum config_result parse_args(const char *const *args)
{
	char *argv[256];
	int argc = 0;
	size_t len = 0;
	FILE *out;
	enum config_result r;

	argv[argc++] = "kage";
	for (; *args; args++) {
		CU_ASSERT_FATAL(argc < 255);
		argv[argc++] = (char *)*args;
	}
	argv[argc] = NULL;

	free(out_text);
	out_text = NULL;
	out = open_memstream(&out_text, &len);
	CU_ASSERT_FATAL(out != NULL);
	memset(err, 'X', sizeof err);	/* so a missing NUL shows */
	r = config_parse(&cfg, argc, argv, out, err, sizeof err);
	fclose(out);
	return r;
}

#define PARSE(...) parse_args((const char *const[]){ __VA_ARGS__, NULL })

static char *describe(const struct kage_config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	CU_ASSERT_FATAL(f != NULL);
	config_describe(c, f);
	fclose(f);
	return text;
}

/* A file in the test's temporary directory; the path is static per name. */
static const char *write_file(const char *name, const char *text)
{
	static char path[8][128];
	static unsigned next;
	char *p = path[next++ % 8];
	FILE *f;

	snprintf(p, sizeof path[0], "%s/%s", tmpdir, name);
	f = fopen(p, "w");
	CU_ASSERT_FATAL(f != NULL);
	fputs(text, f);
	fclose(f);
	return p;
}

static unsigned count(const char *hay, const char *needle)
{
	unsigned n = 0;
	for (const char *s = strstr(hay, needle); s; s = strstr(s + 1, needle))
		n++;
	return n;
}

/* A copy with each run of white space made one space, so wrapped text
 * can be searched. */
static char *squeeze(const char *s)
{
	char *d = malloc(strlen(s) + 1), *o = d;

	CU_ASSERT_FATAL(d != NULL);
	for (; *s; s++)
		if (!(*s == ' ' || *s == '\n') || (o > d && o[-1] != ' '))
			*o++ = *s == '\n' ? ' ' : *s;
	*o = '\0';
	return d;
}

/* Equal strings, or both NULL. */
static bool str_eq(const char *a, const char *b)
{
	return a && b ? !strcmp(a, b) : a == b;
}

static bool list_is(const struct cfg_list *l, const char *const *want, unsigned n)
{
	if (l->n != n)
		return false;
	for (unsigned i = 0; i < n; i++)
		if (strcmp(l->v[i], want[i]))
			return false;
	return true;
}

static int suite_init(void)
{
	strcpy(tmpdir, "/tmp/test_config.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int suite_clean(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	char path[512];

	if (d) {
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
			if (unlink(path))
				rmdir(path);
		}
		closedir(d);
	}
	rmdir(tmpdir);
	free(out_text);
	out_text = NULL;
	return 0;
}

/* ---- defaults ---------------------------------------------------------------- */

static void test_defaults(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	const char *methods[] = { "GET", "HEAD" };

	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER), CONFIG_OK);
	CU_ASSERT_STRING_EQUAL(err, "");
	CU_ASSERT_STRING_EQUAL(cfg.listen.text, "0.0.0.0:8090");
	CU_ASSERT_EQUAL(cfg.listen.ss.ss_family, AF_INET);
	CU_ASSERT_EQUAL(cfg.listen.len, sizeof(struct sockaddr_in));
	CU_ASSERT_EQUAL(ntohs(((struct sockaddr_in *)&cfg.listen.ss)->sin_port), 8090);
	CU_ASSERT_EQUAL(cfg.threads, (unsigned)(cpus < 1 ? 1 : cpus > 1024 ? 1024 : cpus));
	CU_ASSERT_PTR_NULL(cfg.pin_cpus);
	CU_ASSERT_EQUAL(cfg.npin_cpus, 0);
	CU_ASSERT_EQUAL(cfg.ring_entries, 4096);
	CU_ASSERT_EQUAL(cfg.buffers, 512);
	CU_ASSERT_EQUAL(cfg.buffer_size, 65536);
	CU_ASSERT_EQUAL(cfg.max_conns, 65536);
	CU_ASSERT_EQUAL(cfg.client_timeout, 15);
	CU_ASSERT_EQUAL(cfg.backend_timeout, 10);
	CU_ASSERT_EQUAL(cfg.shadow_timeout, 10);
	CU_ASSERT_EQUAL(cfg.drain_timeout, 10);
	CU_ASSERT(list_is(&cfg.shadow_methods, methods, 2));
	CU_ASSERT_EQUAL(cfg.shadow_paths.n, 0);
	CU_ASSERT_EQUAL(cfg.shadow_sample, 100);
	CU_ASSERT_EQUAL(cfg.sample_key, SAMPLE_RANDOM);
	CU_ASSERT_PTR_NULL(cfg.sample_key_name);
	CU_ASSERT_EQUAL(cfg.shadow_max_inflight, 1024);
	CU_ASSERT_EQUAL(cfg.shadow_body_max, 1048576);
	CU_ASSERT_EQUAL(cfg.shadow_memory, 64 * 1048576);
	CU_ASSERT_EQUAL(cfg.nedits, 0);
	CU_ASSERT_STRING_EQUAL(cfg.session_header, "X-Kage-Session");
	CU_ASSERT_EQUAL(cfg.capture_max, 1048576);
	CU_ASSERT_EQUAL(cfg.ignore_headers.n, 0);
	CU_ASSERT_EQUAL(cfg.ignore_json.n, 0);
	CU_ASSERT_EQUAL(cfg.reference, -1);
	CU_ASSERT_DOUBLE_EQUAL(cfg.noise_relative, 0.20, 1e-12);
	CU_ASSERT_DOUBLE_EQUAL(cfg.noise_absolute, 0.0003, 1e-12);
	CU_ASSERT_EQUAL(cfg.redact_headers.n, 0);
	CU_ASSERT_STRING_EQUAL(cfg.diff_log, "-");
	CU_ASSERT_FALSE(cfg.diff_log_all);
	CU_ASSERT_FALSE(cfg.admin_enabled);
	CU_ASSERT_PTR_NULL(cfg.plugin_path);
	CU_ASSERT_PTR_NULL(cfg.plugin_arg);
	CU_ASSERT_PTR_NULL(cfg.access_log);
	CU_ASSERT_EQUAL(cfg.log_level, LOG_INFO);
	CU_ASSERT_FALSE(cfg.check);
	CU_ASSERT_FALSE(cfg.send_zc);

	CU_ASSERT_EQUAL(cfg.nbackends, 1);
	CU_ASSERT_STRING_EQUAL(cfg.backends[0].name, "prod");
	CU_ASSERT_STRING_EQUAL(cfg.backends[0].host, "127.0.0.1");
	CU_ASSERT_EQUAL(cfg.backends[0].port, 8080);
	CU_ASSERT_STRING_EQUAL(cfg.backends[0].addr.text, "127.0.0.1:8080");
	CU_ASSERT(cfg.backends[0].master);
	CU_ASSERT_EQUAL(cfg.backends[0].sample, 100);
	CU_ASSERT_EQUAL(cfg.backends[0].timeout, 10);
	CU_ASSERT_STRING_EQUAL(out_text, "");
	config_free(&cfg);
}

/* ---- valid values, one field each ------------------------------------------------ */

enum kind { K_UINT, K_U64, K_DBL, K_STR };

struct valid_case {
	const char *args[4];
	enum kind kind;
	size_t off;
	uint64_t u;
	double d;
	const char *s;		/* K_STR; NULL = the field is NULL */
};

#define OFF(f) offsetof(struct kage_config, f)
#define V_U(f, v, ...)   { { __VA_ARGS__ }, K_UINT, OFF(f), .u = (v) }
#define V_U64(f, v, ...) { { __VA_ARGS__ }, K_U64, OFF(f), .u = (v) }
#define V_D(f, v, ...)   { { __VA_ARGS__ }, K_DBL, OFF(f), .d = (v) }
#define V_S(f, v, ...)   { { __VA_ARGS__ }, K_STR, OFF(f), .s = (v) }

static const struct valid_case valid_cases[] = {
	V_U(threads, 1, "-t", "1"),
	V_U(threads, 7, "-t7"),
	V_U(threads, 7, "-t", "7"),
	V_U(threads, 7, "--threads=7"),
	V_U(threads, 1024, "--threads", "1024"),
	V_U(threads, 5, "-t", "3", "-t", "5"),	/* the last one wins */
	V_U(ring_entries, 1, "--ring-entries", "1"),
	V_U(ring_entries, 4, "--ring-entries", "3"),
	V_U(ring_entries, 1024, "--ring-entries", "1000"),
	V_U(ring_entries, 4096, "--ring-entries", "4096"),
	V_U(ring_entries, 8192, "--ring-entries", "4097"),
	V_U(ring_entries, 32768, "--ring-entries=32768"),
	V_U(buffers, 1, "--buffers", "1"),
	V_U(buffers, 8, "--buffers", "5"),
	V_U(buffers, 32768, "--buffers", "32767"),
	V_U(buffer_size, 512, "--buffer-size", "512"),
	V_U(buffer_size, 16384, "--buffer-size", "16k"),
	V_U(buffer_size, 16384, "--buffer-size", "16K"),
	V_U(buffer_size, 16384, "--buffer-size", "16KiB"),
	V_U(buffer_size, 1048576, "--buffer-size", "1m"),
	V_U(buffer_size, 1048576, "--buffer-size", "1048576"),
	V_U(buffer_size, 4194304, "--buffer-size", "4M"),
	V_U(buffer_size, 4194304, "--buffer-size=4MiB"),
	V_U(max_conns, 1, "--max-conns", "1"),
	V_U(max_conns, 1048576, "--max-conns", "1048576"),
	V_U(shadow_max_inflight, 1, "--shadow-max-inflight", "1"),
	V_U(shadow_max_inflight, 1048576, "--shadow-max-inflight", "1048576"),
	V_D(client_timeout, 2.5, "--client-timeout", "2.5"),
	V_D(client_timeout, 0.5, "--client-timeout", "500ms"),
	V_D(client_timeout, 0.0015, "--client-timeout", "1.5ms"),
	V_D(client_timeout, 30, "--client-timeout", "30s"),
	V_D(client_timeout, 0.5, "--client-timeout", ".5"),
	V_D(client_timeout, 5, "--client-timeout", "5."),
	V_D(client_timeout, 0.001, "--client-timeout", "0.001"),
	V_D(client_timeout, 86400, "--client-timeout", "86400"),
	V_D(client_timeout, 86400, "--client-timeout", "86400000ms"),
	V_D(backend_timeout, 3, "--backend-timeout", "3"),
	V_D(shadow_timeout, 3, "--backend-timeout", "3"),	/* follows it */
	V_D(shadow_timeout, 4, "--shadow-timeout", "4", "--backend-timeout", "3"),
	V_D(backend_timeout, 3, "--shadow-timeout", "4", "--backend-timeout", "3"),
	V_D(drain_timeout, 0, "--drain-timeout", "0"),
	V_D(drain_timeout, 0, "--drain-timeout", "0ms"),
	V_D(drain_timeout, 86400, "--drain-timeout", "86400"),
	V_D(shadow_sample, 0, "--shadow-sample", "0"),
	V_D(shadow_sample, 12.5, "--shadow-sample", "12.5"),
	V_D(shadow_sample, 50, "--shadow-sample", "50%"),
	V_D(shadow_sample, 100, "--shadow-sample", "100"),
	V_D(noise_relative, 0, "--noise-relative", "0"),
	V_D(noise_relative, 1.5, "--noise-relative", "1.5"),
	V_D(noise_relative, 1000, "--noise-relative", "1000"),
	V_D(noise_absolute, 0, "--noise-absolute", "0"),
	V_D(noise_absolute, 0.01, "--noise-absolute", "0.01"),
	V_D(noise_absolute, 1, "--noise-absolute", "1"),
	V_U64(shadow_body_max, 0, "--shadow-body-max", "0"),
	V_U64(shadow_body_max, 2048, "--shadow-body-max", "2k"),
	V_U64(shadow_body_max, 1073741824, "--shadow-body-max", "1G"),
	V_U64(shadow_body_max, 1073741824, "--shadow-body-max", "1GiB"),
	V_U64(capture_max, 0, "--capture-max", "0"),
	V_U64(capture_max, 2097152, "--capture-max", "2M"),
	V_U64(capture_max, 1073741824, "--capture-max", "1g"),
	V_U64(shadow_memory, 1048576, "--shadow-memory", "1M"),
	V_U64(shadow_memory, 1ULL << 40, "--shadow-memory", "1024G"),
	V_U64(shadow_memory, 256ULL << 20, "--shadow-memory=256MiB"),
	V_S(session_header, "", "--session-header", ""),
	V_S(session_header, "", "--session-header="),
	V_S(session_header, "X-Req", "--session-header", "X-Req"),
	V_S(diff_log, "/var/log/kage.json", "--diff-log", "/var/log/kage.json"),
	V_S(diff_log, "-", "--diff-log", "-"),
	V_S(access_log, "-", "--access-log", "-"),
	V_S(access_log, "/tmp/a", "--access-log=/tmp/a"),
	V_S(access_log, NULL, "--access-log", "/tmp/a", "--access-log="),
	V_S(plugin_path, NULL, "--plugin", ""),
};

static void test_valid_values(void)
{
	for (size_t i = 0; i < sizeof valid_cases / sizeof valid_cases[0]; i++) {
		const struct valid_case *c = &valid_cases[i];
		const char *args[8] = { MASTER };
		unsigned n = 2;
		char *field = (char *)&cfg + c->off;

		for (unsigned j = 0; j < 4 && c->args[j]; j++)
			args[n++] = c->args[j];
		args[n] = NULL;
		if (parse_args(args) != CONFIG_OK) {
			fprintf(stderr, "\n  case %zu (%s %s): %s\n", i, c->args[0], c->args[1] ? c->args[1] : "", err);
			CU_FAIL("valid value refused");
			config_free(&cfg);
			continue;
		}
		switch (c->kind) {
		case K_UINT:
			CU_ASSERT_EQUAL(*(unsigned *)field, c->u);
			break;
		case K_U64:
			CU_ASSERT_EQUAL(*(uint64_t *)field, c->u);
			break;
		case K_DBL:
			CU_ASSERT_DOUBLE_EQUAL(*(double *)field, c->d, 1e-12);
			break;
		case K_STR:
			CU_ASSERT(str_eq(*(char **)field, c->s));
			break;
		}
		config_free(&cfg);
	}
}

/* ---- errors: exact messages ------------------------------------------------- */

struct error_case {
	const char *args[8];
	const char *err;	/* exact, or a prefix when it ends in '*' */
};

#define NYI_GOT(flag, v) flag ": expected an integer from 1 to 1024, got \"" v "\""
#define SEC_GT0 "expected seconds above 0 and at most 86400 (like 10, 2.5 or 500ms)"
#define SEC_GE0 "expected seconds from 0 to 86400 (like 10, 2.5 or 500ms)"
#define SIZE_HINT "(a byte count, or with a k, M or G suffix)"

static const struct error_case error_cases[] = {
	/* flags themselves */
	{ { MASTER, "--foo" }, "unknown option \"--foo\" (see --help)" },
	{ { MASTER, "--foo=bar" }, "unknown option \"--foo\" (see --help)" },
	{ { MASTER, "--thread", "2" }, "unknown option \"--thread\" (see --help)" },
	{ { MASTER, "-x" }, "unknown option \"-x\" (see --help)" },
	{ { MASTER, "-dx" }, "unknown option \"-x\" (see --help)" },
	{ { MASTER, "--listen" }, "--listen: needs a value" },
	{ { MASTER, "-l" }, "-l: needs a value" },
	{ { "--listen", "--threads", "2", MASTER }, "--listen: needs a value" },
	{ { "-t", "-d", MASTER }, "-t: needs a value" },
	{ { MASTER, "stray" }, "unexpected argument \"stray\" (see --help)" },
	{ { MASTER, "-" }, "unexpected argument \"-\" (see --help)" },
	{ { MASTER, "--", "x" }, "unexpected argument \"x\" (see --help)" },
	{ { MASTER, "--send-zc=maybe" }, "--send-zc: expected true or false, got \"maybe\"" },
	{ { MASTER, "--help=1" }, "--help: takes no value" },
	{ { "--config", "/nonexistent/kage.conf", MASTER },
	  "--config: cannot open \"/nonexistent/kage.conf\": No such file or directory" },
	{ { "--config", "/a", "--config", "/b" }, "--config: given twice" },
	{ { "-t", "2" }, "--master: required" },
	{ { NULL }, "--master: required" },

	/* integers */
	{ { "--threads", "abc" }, NYI_GOT("--threads", "abc") },
	{ { "-t", "0" }, NYI_GOT("-t", "0") },
	{ { "--threads=1025" }, NYI_GOT("--threads", "1025") },
	{ { "-t", "-1" }, NYI_GOT("-t", "-1") },
	{ { "-t", "+1" }, NYI_GOT("-t", "+1") },
	{ { "-t", " 1" }, NYI_GOT("-t", " 1") },
	{ { "-t", "1.0" }, NYI_GOT("-t", "1.0") },
	{ { "-t", "0x10" }, NYI_GOT("-t", "0x10") },
	{ { "-t", "" }, NYI_GOT("-t", "") },
	{ { "-t", "99999999999999999999999" }, NYI_GOT("-t", "99999999999999999999999") },
	{ { "-t", "1\n2" }, NYI_GOT("-t", "1?2") },	/* still one line */
	{ { "--ring-entries", "0" }, "--ring-entries: expected an integer from 1 to 32768, got \"0\"" },
	{ { "--ring-entries", "32769" }, "--ring-entries: expected an integer from 1 to 32768, got \"32769\"" },
	{ { "--buffers", "0" }, "--buffers: expected an integer from 1 to 32768, got \"0\"" },
	{ { "--buffers", "40000" }, "--buffers: expected an integer from 1 to 32768, got \"40000\"" },
	{ { "--max-conns", "0" }, "--max-conns: expected an integer from 1 to 1048576, got \"0\"" },
	{ { "--max-conns", "1048577" }, "--max-conns: expected an integer from 1 to 1048576, got \"1048577\"" },
	{ { "--shadow-max-inflight", "0" },
	  "--shadow-max-inflight: expected an integer from 1 to 1048576, got \"0\"" },

	/* sizes */
	{ { "--buffer-size", "511" },
	  "--buffer-size: expected a size from 512 bytes to 4 MiB " SIZE_HINT ", got \"511\"" },
	{ { "--buffer-size", "4194305" },
	  "--buffer-size: expected a size from 512 bytes to 4 MiB " SIZE_HINT ", got \"4194305\"" },
	{ { "--buffer-size", "1kb" },
	  "--buffer-size: expected a size from 512 bytes to 4 MiB " SIZE_HINT ", got \"1kb\"" },
	{ { "--buffer-size", "k" },
	  "--buffer-size: expected a size from 512 bytes to 4 MiB " SIZE_HINT ", got \"k\"" },
	{ { "--buffer-size", "1.5M" },
	  "--buffer-size: expected a size from 512 bytes to 4 MiB " SIZE_HINT ", got \"1.5M\"" },
	{ { "--shadow-body-max", "1073741825" },
	  "--shadow-body-max: expected a size from 0 to 1 GiB " SIZE_HINT ", got \"1073741825\"" },
	{ { "--capture-max", "2G" },
	  "--capture-max: expected a size from 0 to 1 GiB " SIZE_HINT ", got \"2G\"" },
	{ { "--shadow-memory", "1023k" },
	  "--shadow-memory: expected a size from 1 MiB to 1 TiB " SIZE_HINT ", got \"1023k\"" },
	{ { "--shadow-memory", "99999999999999999999G" },
	  "--shadow-memory: expected a size from 1 MiB to 1 TiB " SIZE_HINT ", got \"99999999999999999999G\"" },

	/* durations, percentages, numbers */
	{ { "--client-timeout", "0" }, "--client-timeout: " SEC_GT0 ", got \"0\"" },
	{ { "--client-timeout", "0ms" }, "--client-timeout: " SEC_GT0 ", got \"0ms\"" },
	{ { "--client-timeout", "86401" }, "--client-timeout: " SEC_GT0 ", got \"86401\"" },
	{ { "--backend-timeout", "-1" }, "--backend-timeout: " SEC_GT0 ", got \"-1\"" },
	{ { "--backend-timeout", "1e3" }, "--backend-timeout: " SEC_GT0 ", got \"1e3\"" },
	{ { "--backend-timeout", "inf" }, "--backend-timeout: " SEC_GT0 ", got \"inf\"" },
	{ { "--backend-timeout", "nan" }, "--backend-timeout: " SEC_GT0 ", got \"nan\"" },
	{ { "--shadow-timeout", "1.2.3" }, "--shadow-timeout: " SEC_GT0 ", got \"1.2.3\"" },
	{ { "--shadow-timeout", "ms" }, "--shadow-timeout: " SEC_GT0 ", got \"ms\"" },
	{ { "--shadow-timeout", "10m" }, "--shadow-timeout: " SEC_GT0 ", got \"10m\"" },
	{ { "--shadow-timeout", "." }, "--shadow-timeout: " SEC_GT0 ", got \".\"" },
	{ { "--drain-timeout", "-1" }, "--drain-timeout: " SEC_GE0 ", got \"-1\"" },
	{ { "--drain-timeout", "86400.5" }, "--drain-timeout: " SEC_GE0 ", got \"86400.5\"" },
	{ { "--shadow-sample", "101" }, "--shadow-sample: expected a percentage from 0 to 100, got \"101\"" },
	{ { "--shadow-sample", "100.01" }, "--shadow-sample: expected a percentage from 0 to 100, got \"100.01\"" },
	{ { "--shadow-sample", "-1" }, "--shadow-sample: expected a percentage from 0 to 100, got \"-1\"" },
	{ { "--shadow-sample", "%" }, "--shadow-sample: expected a percentage from 0 to 100, got \"%\"" },
	{ { "--noise-relative", "-0.1" }, "--noise-relative: expected a number of at least 0, got \"-0.1\"" },
	{ { "--noise-absolute", "1.5" }, "--noise-absolute: expected a number from 0 to 1, got \"1.5\"" },
	{ { "--noise-absolute", "x" }, "--noise-absolute: expected a number from 0 to 1, got \"x\"" },

	/* addresses */
	{ { "-l", "8090" }, "-l: expected HOST:PORT, [V6]:PORT or :PORT, got \"8090\"" },
	{ { "-l", ":65536" }, "-l: expected a port from 0 to 65535, got \":65536\"" },
	{ { "-l", ":" }, "-l: expected a port from 0 to 65535, got \":\"" },
	{ { "-l", "[::1]8090" }, "-l: expected HOST:PORT, [V6]:PORT or :PORT, got \"[::1]8090\"" },
	{ { "-l", "[]:80" }, "-l: expected HOST:PORT, [V6]:PORT or :PORT, got \"[]:80\"" },
	{ { "-l", "::1:80" }, "-l: put IPv6 addresses in brackets, like [::1]:8090, got \"::1:80\"" },
	{ { "-l", "a b:80" }, "-l: \"a b\" is not a host name or address" },
	{ { "-l", "[::zz]:80" }, "-l: cannot resolve \"[::zz]\": *" },
	{ { "--admin", "x" }, "--admin: expected HOST:PORT, [V6]:PORT or :PORT, got \"x\"" },
	{ { "-m", "p" }, "-m: expected NAME=HOST:PORT, got \"p\"" },
	{ { "-m", "=127.0.0.1:80" }, "-m: expected NAME=HOST:PORT, got \"=127.0.0.1:80\"" },
	{ { "-m", "p=" }, "-m: expected NAME=HOST:PORT, got \"p=\"" },
	{ { "-m", "p=127.0.0.1" }, "-m: expected HOST:PORT, got \"127.0.0.1\"" },
	{ { "-m", "p=:80" }, "-m: expected HOST:PORT, got \":80\"" },
	{ { "-m", "p=127.0.0.1:0" }, "-m: expected a port from 1 to 65535, got \"127.0.0.1:0\"" },
	{ { "--master", "p=127.0.0.1:65536" }, "--master: expected a port from 1 to 65535, got \"127.0.0.1:65536\"" },
	{ { "--master=p=127.0.0.1:http" }, "--master: expected a port from 1 to 65535, got \"127.0.0.1:http\"" },
	{ { "-m", "p=::1:80" }, "-m: put IPv6 addresses in brackets, like [::1]:8090, got \"::1:80\"" },
	{ { "-m", "p=[1.2.3.4]:80" }, "-m: cannot resolve \"[1.2.3.4]\": *" },
	{ { "-m", "p=127.0.0.1:80,sample=5" },
	  "-m: the master takes no per-backend options (those are for --shadow), got \"p=127.0.0.1:80,sample=5\"" },
	{ { "-m", "bad name=127.0.0.1:80" },
	  "-m: backend name \"bad name\" may only hold letters, digits, '_', '.' and '-'" },
	{ { "-m", "abcdefghijabcdefghijabcdefghijab=127.0.0.1:80" },
	  "-m: backend name \"abcdefghijabcdefghijabcdefghijab\" is longer than 31 characters" },
	{ { "-m", "a=127.0.0.1:1", "--master", "b=127.0.0.1:2" },
	  "--master: given twice (there is one master; the others are --shadow)" },

	/* shadows */
	{ { "-m", "a=127.0.0.1:1", "-s", "a=127.0.0.1:2" }, "-s: a backend name given twice: \"a\"" },
	{ { MASTER, "-s", "b=127.0.0.1:2", "--shadow", "b=127.0.0.1:3" },
	  "--shadow: a backend name given twice: \"b\"" },
	{ { MASTER, "-s", "b=127.0.0.1:2,foo=1" },
	  "-s: unknown per-shadow option \"foo\" (sample=, timeout=, body-max=)" },
	{ { MASTER, "-s", "b=127.0.0.1:2,sample" },
	  "-s: expected OPTION=VALUE after the address (sample=, timeout=, body-max=), got \"sample\"" },
	{ { MASTER, "-s", "b=127.0.0.1:2," },
	  "-s: expected OPTION=VALUE after the address (sample=, timeout=, body-max=), got \"\"" },
	{ { MASTER, "-s", "b=127.0.0.1:2,sample=101" },
	  "-s: sample: expected a percentage from 0 to 100, got \"101\"" },
	{ { MASTER, "-s", "b=127.0.0.1:2,sample=1,sample=2" }, "-s: sample= given twice" },
	{ { MASTER, "-s", "b=127.0.0.1:2,timeout=0" }, "-s: timeout: " SEC_GT0 ", got \"0\"" },
	{ { MASTER, "-s", "b=127.0.0.1:2,body-max=2G" },
	  "-s: body-max: expected a size from 0 to 1 GiB, got \"2G\"" },
	{ { MASTER, "-s", "b=127.0.0.1" }, "-s: expected HOST:PORT, got \"127.0.0.1\"" },

	/* CPUs */
	{ { "--pin-cpus", "x" }, "--pin-cpus: expected CPU numbers and ranges like 0,2,4 or 0-3, got \"x\"" },
	{ { "--pin-cpus", "1-0" }, "--pin-cpus: expected CPU numbers and ranges like 0,2,4 or 0-3, got \"1-0\"" },
	{ { "--pin-cpus", "0-" }, "--pin-cpus: expected CPU numbers and ranges like 0,2,4 or 0-3, got \"0-\"" },
	{ { "--pin-cpus", "0,,1" }, "--pin-cpus: expected CPU numbers and ranges like 0,2,4 or 0-3, got \"0,,1\"" },
	{ { "--pin-cpus", "0," }, "--pin-cpus: expected CPU numbers and ranges like 0,2,4 or 0-3, got \"0,\"" },
	{ { "--pin-cpus", "-1" }, "--pin-cpus: expected CPU numbers and ranges like 0,2,4 or 0-3, got \"-1\"" },
	{ { "--pin-cpus", "0,0" }, "--pin-cpus: CPU 0 listed twice" },
	{ { "--pin-cpus", "1024" }, "--pin-cpus: CPU 1024 does not exist (CPUs 0 to *" },
	{ { "--pin-cpus", "0-99999999999" }, "--pin-cpus: CPU 99999999999 does not exist (CPUs 0 to *" },

	/* shadowing */
	{ { "--shadow-methods", "" },
	  "--shadow-methods: expected a comma-separated list of methods like GET,HEAD, got \"\"" },
	{ { "--shadow-methods", "GET,,HEAD" },
	  "--shadow-methods: expected a comma-separated list of methods like GET,HEAD, got \"GET,,HEAD\"" },
	{ { "--shadow-methods", "GET,G T" }, "--shadow-methods: \"G T\" is not an HTTP method" },
	{ { "--shadow-methods", "GET;" }, "--shadow-methods: \"GET;\" is not an HTTP method" },
	{ { "--shadow-path", "api" }, "--shadow-path: expected a path prefix starting with '/', got \"api\"" },
	{ { "--shadow-path", "" }, "--shadow-path: expected a path prefix starting with '/', got \"\"" },
	{ { "--shadow-path", "/a b" }, "--shadow-path: a path prefix holds no spaces or control characters" },
	{ { "--shadow-sample-key", "foo" },
	  "--shadow-sample-key: expected random, header:NAME, cookie:NAME or query:NAME, got \"foo\"" },
	{ { "--shadow-sample-key", "header:" }, "--shadow-sample-key: \"\" is not a valid header name" },
	{ { "--shadow-sample-key", "header:a b" }, "--shadow-sample-key: \"a b\" is not a valid header name" },
	{ { "--shadow-sample-key", "cookie:a=b" }, "--shadow-sample-key: \"a=b\" is not a valid cookie name" },
	{ { "--shadow-sample-key", "query:a&b" }, "--shadow-sample-key: \"a&b\" is not a valid query name" },
	{ { "--set-header", "X-A: 1" },
	  "--set-header: expected BACKEND=Name: value (BACKEND a name or *), got \"X-A: 1\"" },
	{ { "--set-header", "*=X-A" }, "--set-header: expected BACKEND=Name: value, got \"*=X-A\"" },
	{ { "--set-header", "*=X A: 1" }, "--set-header: \"X A\" is not a header name" },
	{ { "--set-header", "*=: 1" }, "--set-header: \"\" is not a header name" },
	{ { "--set-header", "*=Connection: close" },
	  "--set-header: \"Connection\" cannot be set: kage frames each hop itself" },
	{ { "--set-header", "*=content-length: 1" },
	  "--set-header: \"content-length\" cannot be set: kage frames each hop itself" },
	{ { "--set-header", "*=TE: trailers" }, "--set-header: \"TE\" cannot be set: kage frames each hop itself" },
	{ { "--set-header", "*=Host: x" },
	  "--set-header: \"Host\" cannot be set: kage frames each hop itself and keeps Host as the client sent it" },
	{ { "--set-header", "*=X-A: a\rb" },
	  "--set-header: the value of \"X-A\" holds a control character (CR, LF...)" },
	{ { "--set-header", "*=X-A: a\nb" },
	  "--set-header: the value of \"X-A\" holds a control character (CR, LF...)" },
	{ { "--set-header", "a b=X-A: 1" },
	  "--set-header: backend name \"a b\" may only hold letters, digits, '_', '.' and '-'" },
	{ { MASTER, "--set-header", "nobody=X-A: 1" }, "--set-header: no backend named \"nobody\"" },
	{ { "--remove-header", "*" }, "--remove-header: expected BACKEND=Name (BACKEND a name or *), got \"*\"" },
	{ { "--remove-header", "*=X-A: 1" }, "--remove-header: \"X-A: 1\" is not a header name" },
	{ { "--remove-header", "*=Transfer-Encoding" },
	  "--remove-header: \"Transfer-Encoding\" cannot be removed: kage frames each hop itself" },
	{ { "--remove-header", "*=Upgrade" },
	  "--remove-header: \"Upgrade\" cannot be removed: kage frames each hop itself" },
	{ { "--remove-header", "*=Keep-Alive" },
	  "--remove-header: \"Keep-Alive\" cannot be removed: kage frames each hop itself" },
	{ { "--remove-header", "*=Proxy-Connection" },
	  "--remove-header: \"Proxy-Connection\" cannot be removed: kage frames each hop itself" },
	{ { "--remove-header", "*=Trailer" },
	  "--remove-header: \"Trailer\" cannot be removed: kage frames each hop itself" },
	{ { MASTER, "--remove-header", "x=X-A" }, "--remove-header: no backend named \"x\"" },
	{ { "--session-header", "a b" },
	  "--session-header: \"a b\" is not a header name (an empty value disables it)" },
	{ { "--session-header", "Connection" },
	  "--session-header: \"Connection\" cannot be used: kage frames each hop itself" },

	/* comparison */
	{ { "--ignore-header", "a:b" }, "--ignore-header: \"a:b\" is not a header name" },
	{ { "--redact-header", "" }, "--redact-header: \"\" is not a header name" },
	{ { "--ignore-json", "a" }, "--ignore-json: a JSON Pointer is empty or starts with '/', got \"a\"" },
	{ { "--ignore-json", "/a~2" }, "--ignore-json: '~' must be followed by 0 or 1 in a JSON Pointer, got \"/a~2\"" },
	{ { "--ignore-json", "/a~" }, "--ignore-json: '~' must be followed by 0 or 1 in a JSON Pointer, got \"/a~\"" },
	{ { "--ignore-json", "/met   " }, "--ignore-json: the JSON Pointer ends with a space" },
	{ { MASTER, "--reference", "nobody" }, "--reference: no shadow named \"nobody\"" },
	{ { MASTER, "--reference", "prod" },
	  "--reference: \"prod\" is the master; the reference is a shadow running master's code" },
	{ { "--reference", "a b" }, "--reference: backend name \"a b\" may only hold letters, digits, '_', '.' and '-'" },
	{ { "--diff-log", "" }, "--diff-log: needs a path" },
	{ { "--diff-log", "a\nb" }, "--diff-log: the path holds a control character" },
	{ { "--diff-log", " " }, "--diff-log: the path starts or ends with a space" },
	{ { "--diff-log", " /tmp/d.jsonl" }, "--diff-log: the path starts or ends with a space" },
	{ { "--access-log", "/tmp/a log " }, "--access-log: the path starts or ends with a space" },
};

static bool err_matches(const char *want)
{
	size_t n = strlen(want);
	if (n && want[n - 1] == '*')
		return !strncmp(err, want, n - 1);
	return !strcmp(err, want);
}

static void test_errors(void)
{
	for (size_t i = 0; i < sizeof error_cases / sizeof error_cases[0]; i++) {
		const struct error_case *c = &error_cases[i];
		enum config_result r = parse_args(c->args);

		CU_ASSERT_EQUAL(r, CONFIG_ERROR);
		CU_ASSERT_PTR_NOT_NULL(memchr(err, '\0', sizeof err));
		CU_ASSERT_PTR_NULL(strchr(err, '\n'));
		if (r != CONFIG_ERROR || !err_matches(c->err)) {
			fprintf(stderr, "\n  case %zu: got %d \"%s\"\n  wanted \"%s\"\n", i, r,
				r == CONFIG_ERROR ? err : "", c->err);
			CU_FAIL("error case");
		}
		CU_ASSERT_STRING_EQUAL(out_text, "");
		config_free(&cfg);
	}
}

/* The shadow count limit needs more arguments than the table holds. */
static void test_too_many_shadows(void)
{
	const char *args[40] = { MASTER };
	char specs[KAGE_MAX_BACKENDS][32];
	unsigned n = 2;

	for (int i = 0; i < KAGE_MAX_BACKENDS - 1; i++) {
		snprintf(specs[i], sizeof specs[i], "s%d=127.0.0.1:%d", i, 9000 + i);
		args[n++] = "--shadow";
		args[n++] = specs[i];
	}
	args[n] = NULL;
	CU_ASSERT_EQUAL(parse_args(args), CONFIG_OK);
	CU_ASSERT_EQUAL(cfg.nbackends, KAGE_MAX_BACKENDS);
	CU_ASSERT_STRING_EQUAL(cfg.backends[KAGE_MAX_BACKENDS - 1].name, "s14");
	config_free(&cfg);

	snprintf(specs[KAGE_MAX_BACKENDS - 1], sizeof specs[0], "extra=127.0.0.1:1");
	args[n++] = "--shadow";
	args[n++] = specs[KAGE_MAX_BACKENDS - 1];
	args[n] = NULL;
	CU_ASSERT_EQUAL(parse_args(args), CONFIG_ERROR);
	CU_ASSERT_STRING_EQUAL(err, "--shadow: at most 15 shadows");
	config_free(&cfg);
}

/* A small err buffer gets a truncated, terminated line; none at all is fine. */
static void test_error_buffer_sizes(void)
{
	char small[8];
	char *argv[] = { "kage", "--threads", "abc", NULL };

	memset(small, 'X', sizeof small);
	CU_ASSERT_EQUAL(config_parse(&cfg, 3, argv, stdout, small, sizeof small), CONFIG_ERROR);
	CU_ASSERT_STRING_EQUAL(small, "--threa");
	config_free(&cfg);
	CU_ASSERT_EQUAL(config_parse(&cfg, 3, argv, stdout, NULL, 0), CONFIG_ERROR);
	config_free(&cfg);
}

/* ---- addresses and backends ------------------------------------------------ */

static void test_listen_forms(void)
{
	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "-l", "127.0.0.1:80"), CONFIG_OK);
	CU_ASSERT_STRING_EQUAL(cfg.listen.text, "127.0.0.1:80");
	CU_ASSERT_EQUAL(cfg.listen.ss.ss_family, AF_INET);
	config_free(&cfg);

	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "--listen", ":0"), CONFIG_OK);
	CU_ASSERT_STRING_EQUAL(cfg.listen.text, "0.0.0.0:0");
	CU_ASSERT_EQUAL(((struct sockaddr_in *)&cfg.listen.ss)->sin_addr.s_addr, htonl(INADDR_ANY));
	config_free(&cfg);

	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "--listen=:65535"), CONFIG_OK);
	CU_ASSERT_STRING_EQUAL(cfg.listen.text, "0.0.0.0:65535");
	config_free(&cfg);

	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "-l", "[::1]:8090"), CONFIG_OK);
	CU_ASSERT_STRING_EQUAL(cfg.listen.text, "[::1]:8090");
	CU_ASSERT_EQUAL(cfg.listen.ss.ss_family, AF_INET6);
	CU_ASSERT_EQUAL(cfg.listen.len, sizeof(struct sockaddr_in6));
	CU_ASSERT_EQUAL(ntohs(((struct sockaddr_in6 *)&cfg.listen.ss)->sin6_port), 8090);
	config_free(&cfg);

	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "-l", "[::]:0"), CONFIG_OK);
	CU_ASSERT_STRING_EQUAL(cfg.listen.text, "[::]:0");
	config_free(&cfg);

	/* localhost is 127.0.0.1 or ::1 depending on /etc/hosts and gai.conf. */
	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "-l", "localhost:9000"), CONFIG_OK);
	CU_ASSERT(!strcmp(cfg.listen.text, "127.0.0.1:9000") || !strcmp(cfg.listen.text, "[::1]:9000"));
	config_free(&cfg);

	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "--admin", "127.0.0.1:0"), CONFIG_OK);
	CU_ASSERT(cfg.admin_enabled);
	CU_ASSERT_STRING_EQUAL(cfg.admin.text, "127.0.0.1:0");
	config_free(&cfg);

	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "--admin", ":9100", "--admin="), CONFIG_OK);
	CU_ASSERT_FALSE(cfg.admin_enabled);
	config_free(&cfg);
}

static void test_backends(void)
{
	CU_ASSERT_EQUAL_FATAL(PARSE("-s", "new=127.0.0.1:8080,sample=12.5,timeout=250ms,body-max=4k",
				    "--master", "old=localhost:8080",
				    "--shadow=same=127.0.0.1:8080",
				    "-s", "v6=[::1]:81,body-max=0",
				    "--shadow-sample", "40", "--shadow-body-max", "2k",
				    "--backend-timeout", "5"), CONFIG_OK);
	CU_ASSERT_EQUAL(cfg.nbackends, 4);

	struct cfg_backend *m = &cfg.backends[0];
	CU_ASSERT_STRING_EQUAL(m->name, "old");
	CU_ASSERT_STRING_EQUAL(m->host, "localhost");
	CU_ASSERT_EQUAL(m->port, 8080);
	CU_ASSERT(m->master);
	CU_ASSERT_EQUAL(m->sample, 100);
	CU_ASSERT_EQUAL(m->timeout, 5);
	CU_ASSERT(!strcmp(m->addr.text, "127.0.0.1:8080") || !strcmp(m->addr.text, "[::1]:8080"));

	struct cfg_backend *s = &cfg.backends[1];
	CU_ASSERT_STRING_EQUAL(s->name, "new");
	CU_ASSERT_FALSE(s->master);
	CU_ASSERT_DOUBLE_EQUAL(s->sample, 12.5, 1e-12);
	CU_ASSERT_DOUBLE_EQUAL(s->timeout, 0.25, 1e-12);
	CU_ASSERT_EQUAL(s->body_max, 4096);

	/* No overrides: the globals, even those given after --shadow. */
	s = &cfg.backends[2];
	CU_ASSERT_STRING_EQUAL(s->name, "same");
	CU_ASSERT_STRING_EQUAL(s->addr.text, "127.0.0.1:8080");
	CU_ASSERT_EQUAL(s->sample, 40);
	CU_ASSERT_EQUAL(s->timeout, 5);		/* shadow-timeout follows backend-timeout */
	CU_ASSERT_EQUAL(s->body_max, 2048);

	s = &cfg.backends[3];
	CU_ASSERT_STRING_EQUAL(s->host, "::1");
	CU_ASSERT_EQUAL(s->port, 81);
	CU_ASSERT_STRING_EQUAL(s->addr.text, "[::1]:81");
	CU_ASSERT_EQUAL(s->addr.ss.ss_family, AF_INET6);
	CU_ASSERT_EQUAL(s->body_max, 0);

	CU_ASSERT_EQUAL(config_backend_index(&cfg, "old"), 0);
	CU_ASSERT_EQUAL(config_backend_index(&cfg, "same"), 2);
	CU_ASSERT_EQUAL(config_backend_index(&cfg, "v6"), 3);
	CU_ASSERT_EQUAL(config_backend_index(&cfg, "Old"), -1);
	CU_ASSERT_EQUAL(config_backend_index(&cfg, ""), -1);
	config_free(&cfg);

	/* Explicit --shadow-timeout wins for shadows without their own. */
	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "-s", "b=127.0.0.1:1", "--shadow-timeout", "2",
				    "--backend-timeout", "7"), CONFIG_OK);
	CU_ASSERT_EQUAL(cfg.backends[1].timeout, 2);
	CU_ASSERT_EQUAL(cfg.backends[0].timeout, 7);
	config_free(&cfg);

	/* Longest allowed name, every allowed character. */
	CU_ASSERT_EQUAL_FATAL(PARSE("-m", "aZ09_.-aaaaaaaaaaaaaaaaaaaaaaaa=127.0.0.1:1"), CONFIG_OK);
	CU_ASSERT_STRING_EQUAL(cfg.backends[0].name, "aZ09_.-aaaaaaaaaaaaaaaaaaaaaaaa");
	CU_ASSERT_EQUAL(cfg.backends[0].port, 1);
	config_free(&cfg);

	CU_ASSERT_EQUAL_FATAL(PARSE("-m", "p=127.0.0.1:65535"), CONFIG_OK);
	CU_ASSERT_EQUAL(cfg.backends[0].port, 65535);
	config_free(&cfg);
}

static void test_pin_cpus(void)
{
	long conf = sysconf(_SC_NPROCESSORS_CONF);
	char arg[32], want[96];

	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "--pin-cpus", "0"), CONFIG_OK);
	CU_ASSERT_EQUAL(cfg.npin_cpus, 1);
	CU_ASSERT_EQUAL(cfg.pin_cpus[0], 0);
	config_free(&cfg);

	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "--pin-cpus", "0", "--pin-cpus="), CONFIG_OK);
	CU_ASSERT_PTR_NULL(cfg.pin_cpus);
	CU_ASSERT_EQUAL(cfg.npin_cpus, 0);
	config_free(&cfg);

	if (conf >= 2) {
		CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "--pin-cpus", "1,0"), CONFIG_OK);
		CU_ASSERT_EQUAL(cfg.npin_cpus, 2);
		CU_ASSERT_EQUAL(cfg.pin_cpus[0], 1);
		CU_ASSERT_EQUAL(cfg.pin_cpus[1], 0);
		config_free(&cfg);

		snprintf(arg, sizeof arg, "0-%ld", conf - 1);
		CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "--pin-cpus", arg), CONFIG_OK);
		CU_ASSERT_EQUAL(cfg.npin_cpus, (unsigned)(conf < CPU_SETSIZE ? conf : CPU_SETSIZE));
		CU_ASSERT_EQUAL(cfg.pin_cpus[cfg.npin_cpus - 1], (int)cfg.npin_cpus - 1);
		config_free(&cfg);
	}
	if (conf >= 3) {
		CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "--pin-cpus", "2,0-1"), CONFIG_OK);
		CU_ASSERT_EQUAL(cfg.npin_cpus, 3);
		CU_ASSERT_EQUAL(cfg.pin_cpus[0], 2);
		CU_ASSERT_EQUAL(cfg.pin_cpus[2], 1);
		config_free(&cfg);
	}

	/* One past the last configured CPU. */
	if (conf > 0 && conf < CPU_SETSIZE) {
		snprintf(arg, sizeof arg, "%ld", conf);
		snprintf(want, sizeof want, "--pin-cpus: CPU %ld does not exist (CPUs 0 to %ld are configured)",
			 conf, conf - 1);
		CU_ASSERT_EQUAL(PARSE(MASTER, "--pin-cpus", arg), CONFIG_ERROR);
		CU_ASSERT_STRING_EQUAL(err, want);
		config_free(&cfg);
	}
}

/* ---- shadowing and comparison options ------------------------------------ */

static void test_lists(void)
{
	const char *methods[] = { "GET", "POST", "PUT" };
	const char *paths[] = { "/api/", "/v2" };
	const char *ignore[] = { "X-Request-Id", "Server" };
	const char *json[] = { "", "/a/*/b", "/x~0y~1z" };
	const char *redact[] = { "X-Api-Key" };

	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "--shadow-methods", "get,Post, put ,GET",
				    "--shadow-path", "/api/", "--shadow-path=/v2",
				    "--ignore-header", "X-Request-Id", "--ignore-header", "Server",
				    "--ignore-json", "", "--ignore-json", "/a/*/b", "--ignore-json", "/x~0y~1z",
				    "--redact-header", "X-Api-Key"), CONFIG_OK);
	CU_ASSERT(list_is(&cfg.shadow_methods, methods, 3));
	CU_ASSERT(list_is(&cfg.shadow_paths, paths, 2));
	CU_ASSERT(list_is(&cfg.ignore_headers, ignore, 2));
	CU_ASSERT(list_is(&cfg.ignore_json, json, 3));
	CU_ASSERT(list_is(&cfg.redact_headers, redact, 1));
	config_free(&cfg);

	/* Any RFC 9110 token is a method. */
	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "--shadow-methods", "PROPFIND,M-SEARCH,x!#$%&'*+.^_`|~"), CONFIG_OK);
	CU_ASSERT_EQUAL(cfg.shadow_methods.n, 3);
	CU_ASSERT_STRING_EQUAL(cfg.shadow_methods.v[2], "X!#$%&'*+.^_`|~");
	config_free(&cfg);
}

static void test_sample_key(void)
{
	static const struct {
		const char *arg;
		enum cfg_sample_key key;
		const char *name;
	} cases[] = {
		{ "random", SAMPLE_RANDOM, NULL },
		{ "header:X-User", SAMPLE_HEADER, "X-User" },
		{ "cookie:sid", SAMPLE_COOKIE, "sid" },
		{ "query:user.id", SAMPLE_QUERY, "user.id" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "--shadow-sample-key", "header:first",
					    "--shadow-sample-key", cases[i].arg), CONFIG_OK);
		CU_ASSERT_EQUAL(cfg.sample_key, cases[i].key);
		CU_ASSERT(str_eq(cfg.sample_key_name, cases[i].name));
		config_free(&cfg);
	}
}

static void test_header_edits(void)
{
	/* Edits name backends defined later on the line. */
	CU_ASSERT_EQUAL_FATAL(PARSE("--set-header", "b=X-A:   spaced  value\t ",
				    "--remove-header", "*=Cookie",
				    "--set-header", "*=X-Empty:",
				    "--set-header", "prod=x-tab:a\tb",
				    MASTER, "-s", "b=127.0.0.1:9"), CONFIG_OK);
	CU_ASSERT_EQUAL_FATAL(cfg.nedits, 4);

	CU_ASSERT_EQUAL(cfg.edits[0].backend, 1);
	CU_ASSERT_FALSE(cfg.edits[0].remove);
	CU_ASSERT_STRING_EQUAL(cfg.edits[0].name, "X-A");
	CU_ASSERT_STRING_EQUAL(cfg.edits[0].value, "spaced  value");

	CU_ASSERT_EQUAL(cfg.edits[1].backend, -1);
	CU_ASSERT(cfg.edits[1].remove);
	CU_ASSERT_STRING_EQUAL(cfg.edits[1].name, "Cookie");
	CU_ASSERT_PTR_NULL(cfg.edits[1].value);

	CU_ASSERT_EQUAL(cfg.edits[2].backend, -1);
	CU_ASSERT_STRING_EQUAL(cfg.edits[2].name, "X-Empty");
	CU_ASSERT_STRING_EQUAL(cfg.edits[2].value, "");

	CU_ASSERT_EQUAL(cfg.edits[3].backend, 0);
	CU_ASSERT_STRING_EQUAL(cfg.edits[3].name, "x-tab");
	CU_ASSERT_STRING_EQUAL(cfg.edits[3].value, "a\tb");
	config_free(&cfg);
}

static void test_plugin(void)
{
	static const struct {
		const char *arg, *path, *parg;
	} cases[] = {
		{ "/opt/kage/a.so", "/opt/kage/a.so", NULL },
		{ "a.so:arg", "a.so", "arg" },
		{ "a.so:", "a.so", "" },
		{ "/o:p/a.so:k=v:w", "/o:p/a.so", "k=v:w" },
		{ "a.so:/etc/b.so:c", "a.so", "/etc/b.so:c" },
		{ "/x.sox/a.so:1", "/x.sox/a.so", "1" },
		{ "libx.so.1", "libx.so.1", NULL },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "--plugin", cases[i].arg), CONFIG_OK);
		CU_ASSERT(str_eq(cfg.plugin_path, cases[i].path));
		CU_ASSERT(str_eq(cfg.plugin_arg, cases[i].parg));
		config_free(&cfg);
	}
}

static void test_reference(void)
{
	CU_ASSERT_EQUAL_FATAL(PARSE("--reference", "twin", MASTER, "-s", "new=127.0.0.1:2",
				    "-s", "twin=127.0.0.1:3"), CONFIG_OK);
	CU_ASSERT_EQUAL(cfg.reference, 2);
	config_free(&cfg);

	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "-s", "twin=127.0.0.1:3", "--reference", "twin",
				    "--reference="), CONFIG_OK);
	CU_ASSERT_EQUAL(cfg.reference, -1);
	config_free(&cfg);
}

static void test_switches(void)
{
	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "--diff-log-all", "--send-zc", "--check"), CONFIG_OK);
	CU_ASSERT(cfg.diff_log_all);
	CU_ASSERT(cfg.send_zc);
	CU_ASSERT(cfg.check);
	CU_ASSERT_EQUAL(cfg.log_level, LOG_INFO);
	config_free(&cfg);

	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "--send-zc", "--send-zc=false", "--check=true"), CONFIG_OK);
	CU_ASSERT_FALSE(cfg.send_zc);
	CU_ASSERT(cfg.check);
	config_free(&cfg);

	static const struct {
		const char *a, *b;
		int level;
	} levels[] = {
		{ "-d", NULL, LOG_DEBUG }, { "--debug", NULL, LOG_DEBUG },
		{ "-q", NULL, LOG_WARN }, { "--quiet", NULL, LOG_WARN },
		{ "-dq", NULL, LOG_WARN }, { "-qd", NULL, LOG_DEBUG },
		{ "-d", "--debug=false", LOG_INFO }, { "-q", "--debug=false", LOG_WARN },
		{ "--quiet=true", "--quiet=false", LOG_INFO },
	};
	for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
		CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, levels[i].a, levels[i].b), CONFIG_OK);
		CU_ASSERT_EQUAL(cfg.log_level, levels[i].level);
		config_free(&cfg);
	}

	/* A bundle whose last letter takes the rest of the word as its value. */
	CU_ASSERT_EQUAL_FATAL(PARSE("-dm", "prod=127.0.0.1:1", "-qt3"), CONFIG_OK);
	CU_ASSERT_EQUAL(cfg.log_level, LOG_WARN);
	CU_ASSERT_EQUAL(cfg.threads, 3);
	CU_ASSERT_STRING_EQUAL(cfg.backends[0].name, "prod");
	config_free(&cfg);
}

/* ---- help and version ----------------------------------------------------------- */

static void test_help(void)
{
	static const char *const flags[] = {
		"-l, --listen ADDR", "-m, --master NAME=HOST:PORT", "-s, --shadow NAME=HOST:PORT",
		"-t, --threads N", "--pin-cpus LIST", "--ring-entries N", "--buffers N",
		"--buffer-size BYTES", "--max-conns N", "--client-timeout SEC", "--backend-timeout SEC",
		"--shadow-timeout SEC", "--shadow-methods LIST", "--shadow-path PREFIX",
		"--shadow-sample PERCENT", "--shadow-sample-key SRC", "--shadow-max-inflight N",
		"--shadow-body-max BYTES", "--shadow-memory BYTES", "--set-header 'BACKEND=Name: value'",
		"--remove-header 'BACKEND=Name'", "--session-header NAME", "--capture-max BYTES",
		"--ignore-header NAME", "--ignore-json PTR", "--reference NAME", "--noise-relative R",
		"--noise-absolute A", "--redact-header NAME", "--diff-log PATH", "--diff-log-all",
		"--admin ADDR", "--plugin FILE.so[:ARG]", "--config FILE", "--drain-timeout SEC",
		"--access-log PATH", "-d, --debug", "-q, --quiet", "--check", "-h, --help",
		"-V, --version", "--send-zc",
	};

	CU_ASSERT_EQUAL_FATAL(PARSE("--help"), CONFIG_EXIT);
	CU_ASSERT_STRING_EQUAL(err, "");
	char *flat = squeeze(out_text);
	CU_ASSERT_PTR_NOT_NULL(strstr(out_text, "Usage: kage --master NAME=HOST:PORT"));
	for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
		if (!strstr(out_text, flags[i])) {
			fprintf(stderr, "\n  --help lacks \"%s\"\n", flags[i]);
			CU_FAIL("flag missing from --help");
		}
	}
	for (const char *g = "Listening:\0Backends:\0Shadowing:\0Comparison:\0Operations:\0"; *g;
	     g += strlen(g) + 1)
		CU_ASSERT_PTR_NOT_NULL(strstr(out_text, g));
	for (const char *d = "default 0.0.0.0:8090\0default 4096\0default 512\0default 64 KiB\0"
			     "default 65536\0default 15\0default 10\0default GET,HEAD\0default 100\0"
			     "default random\0default 1 MiB\0default 64 MiB\0default X-Kage-Session\0"
			     "default 0.2\0default 0.0003\0default -\0default: the online CPUs\0"
			     "default: --backend-timeout\0shorter than --threads\0"; *d; d += strlen(d) + 1) {
		if (!strstr(flat, d)) {
			fprintf(stderr, "\n  --help lacks \"%s\"\n", d);
			CU_FAIL("default missing from --help");
		}
	}
	/* Every flag is implemented: no entry says otherwise. */
	CU_ASSERT_EQUAL(count(out_text, "not yet implemented"), 0);
	/* Every settable flag states its default; entries start with "  -". */
	for (const char *e = strstr(out_text, "\n  -"); e; ) {
		const char *next = strstr(e + 1, "\n  -");
		const char *blank = strstr(e + 1, "\n\n");
		size_t n = (size_t)((next ? next : e + strlen(e)) - e);
		char entry[1024];

		if (blank && (size_t)(blank - e) < n)
			n = (size_t)(blank - e);
		snprintf(entry, sizeof entry, "%.*s", (int)n, e + 1);
		bool action = strstr(entry, "--master ") || strstr(entry, "--config ") ||
			      strstr(entry, "--check ") || strstr(entry, "--help ") ||
			      strstr(entry, "--version ");
		if (!action && !strstr(entry, "default")) {
			fprintf(stderr, "\n  no default in: %s\n", entry);
			CU_FAIL("--help entry without its default");
		}
		e = next;
	}
	/* Wrapped to 79 columns. */
	for (const char *line = out_text; *line;) {
		size_t n = strcspn(line, "\n");
		CU_ASSERT(n <= 79);
		line += n + (line[n] == '\n');
	}
	free(flat);
	config_free(&cfg);

	/* -h acts before values are judged, but after unknown flags are. */
	CU_ASSERT_EQUAL(PARSE("--threads", "abc", "-h"), CONFIG_EXIT);
	CU_ASSERT_PTR_NOT_NULL(strstr(out_text, "Usage: kage"));
	config_free(&cfg);
	CU_ASSERT_EQUAL(PARSE("--foo", "-h"), CONFIG_ERROR);
	CU_ASSERT_STRING_EQUAL(out_text, "");
	config_free(&cfg);

	/* config_usage alone gives the same text. */
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	config_usage(f);
	fclose(f);
	CU_ASSERT_EQUAL(PARSE("-h"), CONFIG_EXIT);
	CU_ASSERT_STRING_EQUAL(text, out_text);
	free(text);
	config_free(&cfg);
}

static void test_version(void)
{
	CU_ASSERT_EQUAL(PARSE("-V"), CONFIG_EXIT);
	CU_ASSERT_STRING_EQUAL(out_text, "kage " KAGE_VERSION "\n");
	config_free(&cfg);
	CU_ASSERT_EQUAL(PARSE(MASTER, "--version"), CONFIG_EXIT);
	CU_ASSERT_STRING_EQUAL(out_text, "kage 0.1.0\n");
	config_free(&cfg);
	CU_ASSERT_EQUAL(PARSE("-dV"), CONFIG_EXIT);
	CU_ASSERT_STRING_EQUAL(out_text, "kage 0.1.0\n");
	config_free(&cfg);
}

/* ---- the config file ------------------------------------------------------------- */

static void test_config_file(void)
{
	const char *path = write_file("basic.conf",
		"# kage in front of the user service\n"
		"\n"
		"   # indented comment\n"
		"master = users=127.0.0.1:8080\n"
		"shadow=next=127.0.0.1:8081,sample=50\n"
		"  threads   =   3  \r\n"
		"set-header = next=X-Shadow: yes = really # not a comment\n"
		"diff-log-all = true\n"
		"send-zc = false\n"
		"debug = true\n"
		"shadow-path = /api\n"
		"shadow-path = /v2\n"
		"session-header =\n"
		"listen = :0\n");
	const char *paths[] = { "/api", "/v2" };

	CU_ASSERT_EQUAL_FATAL(PARSE("--config", path), CONFIG_OK);
	CU_ASSERT_EQUAL(cfg.nbackends, 2);
	CU_ASSERT_STRING_EQUAL(cfg.backends[0].name, "users");
	CU_ASSERT_STRING_EQUAL(cfg.backends[1].name, "next");
	CU_ASSERT_EQUAL(cfg.backends[1].sample, 50);
	CU_ASSERT_EQUAL(cfg.threads, 3);
	CU_ASSERT_EQUAL_FATAL(cfg.nedits, 1);
	CU_ASSERT_STRING_EQUAL(cfg.edits[0].value, "yes = really # not a comment");
	CU_ASSERT(cfg.diff_log_all);
	CU_ASSERT_FALSE(cfg.send_zc);
	CU_ASSERT_EQUAL(cfg.log_level, LOG_DEBUG);
	CU_ASSERT(list_is(&cfg.shadow_paths, paths, 2));
	CU_ASSERT_STRING_EQUAL(cfg.session_header, "");
	CU_ASSERT_STRING_EQUAL(cfg.listen.text, "0.0.0.0:0");
	config_free(&cfg);

	/* An empty file is fine; the master may come from the command line. */
	path = write_file("empty.conf", "");
	CU_ASSERT_EQUAL(PARSE("--config", path, MASTER), CONFIG_OK);
	config_free(&cfg);
	CU_ASSERT_EQUAL(PARSE("--config=" "/dev/null", MASTER), CONFIG_OK);
	config_free(&cfg);
}

struct file_error_case {
	const char *text;
	const char *err;	/* after "PATH:" */
};

static const struct file_error_case file_errors[] = {
	{ "master = a=127.0.0.1:1\nfoo = 1\n", "2: unknown key \"foo\"" },
	{ "--threads = 4\n", "1: unknown key \"--threads\" (keys are long option names without \"--\")" },
	{ "t = 4\n", "1: unknown key \"t\"" },
	{ "\n\nthreads 4\n", "3: expected \"key = value\", got \"threads 4\"" },
	{ "= 4\n", "1: expected \"key = value\", got \"= 4\"" },
	{ "master = a=127.0.0.1:1\nthreads = abc\n", "2: threads: expected an integer from 1 to 1024, got \"abc\"" },
	{ "threads =\n", "1: threads: expected an integer from 1 to 1024, got \"\"" },
	{ "config = other.conf\n", "1: config: only on the command line" },
	{ "help = true\n", "1: help: only on the command line" },
	{ "version = true\n", "1: version: only on the command line" },
	{ "check = true\n", "1: check: only on the command line" },
	{ "diff-log-all = yes\n", "1: diff-log-all: expected true or false, got \"yes\"" },
	{ "diff-log-all =\n", "1: diff-log-all: expected true or false, got \"\"" },
	{ "debug = 1\n", "1: debug: expected true or false, got \"1\"" },
	{ "master = a=127.0.0.1:1\nmaster = b=127.0.0.1:2\n",
	  "2: master: given twice (there is one master; the others are --shadow)" },
	{ "master = a=127.0.0.1:1\n# x\nshadow = a=127.0.0.1:2\n", "3: shadow: a backend name given twice: \"a\"" },
	{ "master = a=127.0.0.1:1\nset-header = b=X: 1\n", "2: set-header: no backend named \"b\"" },
	{ "master = a=127.0.0.1:1\nreference = a\n",
	  "2: reference: \"a\" is the master; the reference is a shadow running master's code" },
	{ "listen = nowhere\n", "1: listen: expected HOST:PORT, [V6]:PORT or :PORT, got \"nowhere\"" },
	{ "set-header = *=Connection: close\n", "1: set-header: \"Connection\" cannot be set: kage frames each hop itself" },
};

static void test_config_file_errors(void)
{
	char want[512];

	for (size_t i = 0; i < sizeof file_errors / sizeof file_errors[0]; i++) {
		const char *path = write_file("bad.conf", file_errors[i].text);
		enum config_result r = PARSE("--config", path);

		snprintf(want, sizeof want, "%s:%s", path, file_errors[i].err);
		CU_ASSERT_EQUAL(r, CONFIG_ERROR);
		if (strcmp(err, want)) {
			fprintf(stderr, "\n  file case %zu: got \"%s\"\n  wanted \"%s\"\n", i, err, want);
			CU_FAIL("config file error");
		}
		config_free(&cfg);
	}

	/* A file the command line overrides is still checked. */
	const char *path = write_file("bad2.conf", "threads = many\n");
	CU_ASSERT_EQUAL(PARSE("--config", path, MASTER, "-t", "2"), CONFIG_ERROR);
	snprintf(want, sizeof want, "%s:1: threads: expected an integer from 1 to 1024, got \"many\"", path);
	CU_ASSERT_STRING_EQUAL(err, want);
	config_free(&cfg);

	/* A NUL byte inside a line. */
	snprintf(want, sizeof want, "%s/nul.conf", tmpdir);
	FILE *f = fopen(want, "w");
	CU_ASSERT_FATAL(f != NULL);
	fwrite("threads = 1\nthreads = 2\0x\n", 1, 26, f);
	fclose(f);
	CU_ASSERT_EQUAL(PARSE("--config", want, MASTER), CONFIG_ERROR);
	strcat(want, ":2: NUL byte in line");
	CU_ASSERT_STRING_EQUAL(err, want);
	config_free(&cfg);

	/* A directory opens but cannot be read. */
	snprintf(want, sizeof want, "%s/dir.conf", tmpdir);
	CU_ASSERT_FATAL(mkdir(want, 0700) == 0);
	CU_ASSERT_EQUAL(PARSE("--config", want, MASTER), CONFIG_ERROR);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--config: cannot read \""));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "Is a directory"));
	config_free(&cfg);
}

static void test_config_precedence(void)
{
	const char *path = write_file("prec.conf",
		"master = filemaster=127.0.0.1:1\n"
		"shadow = f1=127.0.0.1:2\n"
		"shadow = f2=127.0.0.1:3\n"
		"threads = 3\n"
		"max-conns = 77\n"
		"shadow-path = /file1\n"
		"shadow-path = /file2\n"
		"ignore-header = X-File\n"
		"set-header = *=X-From: file\n"
		"remove-header = *=X-Gone\n"
		"diff-log-all = true\n"
		"quiet = true\n"
		"shadow-sample = 10\n"
		"reference = f2\n");
	const char *file_paths[] = { "/file1", "/file2" };
	const char *cli_ignore[] = { "X-Cli" };

	/* Nothing on the command line: the file's values. */
	CU_ASSERT_EQUAL_FATAL(PARSE("--config", path), CONFIG_OK);
	CU_ASSERT_STRING_EQUAL(cfg.backends[0].name, "filemaster");
	CU_ASSERT_EQUAL(cfg.nbackends, 3);
	CU_ASSERT_EQUAL(cfg.reference, 2);
	CU_ASSERT_EQUAL(cfg.nedits, 2);
	config_free(&cfg);

	/* The command line wins wherever --config stands on it. */
	CU_ASSERT_EQUAL_FATAL(PARSE("-t", "5", "-m", "climaster=127.0.0.1:9", "--config", path,
				    "-s", "c1=127.0.0.1:4", "--ignore-header", "X-Cli",
				    "--set-header", "c1=X-From: cli", "--diff-log-all=false",
				    "--reference", "c1"), CONFIG_OK);
	CU_ASSERT_EQUAL(cfg.threads, 5);
	CU_ASSERT_EQUAL(cfg.max_conns, 77);			/* file, untouched */
	CU_ASSERT_STRING_EQUAL(cfg.backends[0].name, "climaster");	/* not "given twice" */
	CU_ASSERT_EQUAL(cfg.nbackends, 2);			/* f1, f2 replaced */
	CU_ASSERT_STRING_EQUAL(cfg.backends[1].name, "c1");
	CU_ASSERT_EQUAL(cfg.backends[1].sample, 10);		/* file's global applies */
	CU_ASSERT(list_is(&cfg.shadow_paths, file_paths, 2));	/* not given: kept */
	CU_ASSERT(list_is(&cfg.ignore_headers, cli_ignore, 1));	/* replaced */
	CU_ASSERT_FALSE(cfg.diff_log_all);
	CU_ASSERT_EQUAL(cfg.log_level, LOG_WARN);
	CU_ASSERT_EQUAL(cfg.reference, 1);
	/* set-header replaced; the file's remove-header stays. */
	CU_ASSERT_EQUAL_FATAL(cfg.nedits, 2);
	CU_ASSERT(cfg.edits[0].remove);
	CU_ASSERT_STRING_EQUAL(cfg.edits[0].name, "X-Gone");
	CU_ASSERT_FALSE(cfg.edits[1].remove);
	CU_ASSERT_STRING_EQUAL(cfg.edits[1].value, "cli");
	CU_ASSERT_EQUAL(cfg.edits[1].backend, 1);
	config_free(&cfg);

	/* Several command-line values of one option all stay. */
	CU_ASSERT_EQUAL_FATAL(PARSE("--config", path, "--shadow-path", "/a", "--shadow-path", "/b",
				    "-s", "x=127.0.0.1:5", "-s", "y=127.0.0.1:6", "--reference="), CONFIG_OK);
	CU_ASSERT_EQUAL(cfg.shadow_paths.n, 2);
	CU_ASSERT_STRING_EQUAL(cfg.shadow_paths.v[0], "/a");
	CU_ASSERT_STRING_EQUAL(cfg.shadow_paths.v[1], "/b");
	CU_ASSERT_EQUAL(cfg.nbackends, 3);
	CU_ASSERT_EQUAL(cfg.reference, -1);
	config_free(&cfg);

	/* Dropping the file's shadows can leave the file's reference dangling. */
	CU_ASSERT_EQUAL(PARSE("--config", path, "-s", "x=127.0.0.1:5"), CONFIG_ERROR);
	char want[256];
	snprintf(want, sizeof want, "%s:14: reference: no shadow named \"f2\"", path);
	CU_ASSERT_STRING_EQUAL(err, want);
	config_free(&cfg);

	/* A command-line shadow may reuse the name of a file shadow it replaced. */
	CU_ASSERT_EQUAL(PARSE("--config", path, "-s", "f2=127.0.0.1:7"), CONFIG_OK);
	CU_ASSERT_EQUAL(cfg.reference, 1);
	CU_ASSERT_EQUAL(cfg.backends[1].port, 7);
	config_free(&cfg);
}

/* ---- describe --------------------------------------------------------------------- */

static void roundtrip(const char *const *args)
{
	char *first, *second;
	const char *path;

	CU_ASSERT_EQUAL_FATAL(parse_args(args), CONFIG_OK);
	first = describe(&cfg);
	config_free(&cfg);

	path = write_file("described.conf", first);
	CU_ASSERT_EQUAL_FATAL(PARSE("--config", path), CONFIG_OK);
	second = describe(&cfg);
	config_free(&cfg);

	CU_ASSERT_STRING_EQUAL(first, second);
	if (strcmp(first, second))
		fprintf(stderr, "\n--- first\n%s--- second\n%s", first, second);
	free(first);
	free(second);
}

static void test_describe_roundtrip(void)
{
	roundtrip((const char *const[]){ MASTER, NULL });
	roundtrip((const char *const[]){
		"-l", "[::1]:0", "-m", "prod=localhost:8080",
		"-s", "next=127.0.0.1:8081,sample=33.333,timeout=1.5ms,body-max=3k",
		"-s", "twin=[::1]:8080", "-s", "same=127.0.0.1:8081,timeout=86400",
		"-t", "3", "--pin-cpus", "0-0", "--ring-entries", "100", "--buffers", "3",
		"--buffer-size", "1M", "--max-conns", "10", "--client-timeout", "0.1",
		"--backend-timeout", "2.25", "--shadow-timeout", "500ms", "--drain-timeout", "0",
		"--shadow-methods", "get,post", "--shadow-path", "/a", "--shadow-path", "/b/c",
		"--shadow-sample", "0.1", "--shadow-sample-key", "cookie:sid",
		"--shadow-max-inflight", "7", "--shadow-body-max", "0", "--shadow-memory", "2G",
		"--set-header", "*=X-A: a  b", "--remove-header", "twin=Cookie",
		"--set-header", "next=X-B:", "--session-header", "",
		"--capture-max", "1", "--ignore-header", "Server", "--ignore-json", "",
		"--ignore-json", "/a/*/~0", "--reference", "twin", "--noise-relative", "0.123456789",
		"--noise-absolute", "0.00001", "--redact-header", "X-Key", "--diff-log", "/tmp/d",
		"--diff-log-all", "--admin", ":9100", "--plugin", "/o:p/x.so:a:b",
		"--access-log", "-", "-q", "--send-zc", NULL });
	roundtrip((const char *const[]){ MASTER, "-d", "--plugin", "x.so", "--shadow-sample-key",
					 "query:u", "--pin-cpus", "0", NULL });
}

static void test_describe_content(void)
{
	CU_ASSERT_EQUAL_FATAL(PARSE(MASTER, "-s", "b=127.0.0.1:2,sample=5", "--set-header", "b=X: 1",
				    "--ignore-json", "", "--session-header", "", "--set-header", "*=E:",
				    "--remove-header", "*=Y", "--set-header", "*=Z: 2", "-l", ":0"), CONFIG_OK);
	char *text = describe(&cfg);
	config_free(&cfg);

	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nlisten = 0.0.0.0:0\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nmaster = prod=127.0.0.1:8080\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nshadow = b=127.0.0.1:2,sample=5,timeout=10,body-max=1048576\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nset-header = b=X: 1\nset-header = *=E:\nremove-header = *=Y\n"
					    "set-header = *=Z: 2\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nnoise-absolute = 0.0003\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nshadow-methods = GET,HEAD\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nadmin =\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nignore-json =\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nsession-header =\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nset-header = *=E:\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\n# shadow-path: none\n"));
	CU_ASSERT_PTR_NULL(strstr(text, "check"));
	CU_ASSERT_PTR_NULL(strstr(text, "config ="));
	/* Every line is blank, a comment or "key = value"/"key =". */
	for (const char *line = text; *line;) {
		size_t n = strcspn(line, "\n");
		CU_ASSERT(n == 0 || line[0] == '#' || memchr(line, '=', n));
		CU_ASSERT(n == 0 || line[n - 1] != ' ');
		line += n + (line[n] == '\n');
	}
	free(text);
}

/* No hidden state between calls (getopt's would show up here). */
static void test_repeated_parses(void)
{
	for (int i = 0; i < 50; i++) {
		CU_ASSERT_EQUAL(PARSE(MASTER, "-t", "2", "-s", "b=127.0.0.1:1"), CONFIG_OK);
		CU_ASSERT_EQUAL(cfg.threads, 2);
		CU_ASSERT_EQUAL(cfg.nbackends, 2);
		config_free(&cfg);
		CU_ASSERT_EQUAL(PARSE(MASTER, "--bogus"), CONFIG_ERROR);
		config_free(&cfg);
		CU_ASSERT_EQUAL(PARSE(MASTER), CONFIG_OK);
		CU_ASSERT_EQUAL(cfg.nbackends, 1);
		CU_ASSERT_EQUAL(cfg.log_level, LOG_INFO);
		config_free(&cfg);
	}
	/* config_free leaves a struct that may be freed again. */
	CU_ASSERT_EQUAL(PARSE(MASTER, "--ignore-header", "A"), CONFIG_OK);
	config_free(&cfg);
	config_free(&cfg);
	CU_ASSERT_PTR_NULL(cfg.ignore_headers.v);
}

/* ---- main ---------------------------------------------------------------------------- */

int main(void)
{
	static const struct {
		const char *name;
		CU_TestFunc fn;
	} tests[] = {
		{ "defaults", test_defaults },
		{ "valid values", test_valid_values },
		{ "errors", test_errors },
		{ "too many shadows", test_too_many_shadows },
		{ "error buffer sizes", test_error_buffer_sizes },
		{ "listen forms", test_listen_forms },
		{ "backends", test_backends },
		{ "pin cpus", test_pin_cpus },
		{ "lists", test_lists },
		{ "sample key", test_sample_key },
		{ "header edits", test_header_edits },
		{ "plugin", test_plugin },
		{ "reference", test_reference },
		{ "switches", test_switches },
		{ "help", test_help },
		{ "version", test_version },
		{ "config file", test_config_file },
		{ "config file errors", test_config_file_errors },
		{ "config precedence", test_config_precedence },
		{ "describe round trip", test_describe_roundtrip },
		{ "describe content", test_describe_content },
		{ "repeated parses", test_repeated_parses },
	};
	CU_pSuite suite;
	unsigned failures;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	suite = CU_add_suite("config", suite_init, suite_clean);
	if (!suite)
		goto registry_error;
	for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
		if (!CU_add_test(suite, tests[i].name, tests[i].fn))
			goto registry_error;
	CU_basic_set_mode(CU_BRM_VERBOSE);
	if (CU_basic_run_tests() != CUE_SUCCESS)
		goto registry_error;
	failures = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
	CU_cleanup_registry();
	return failures != 0;

registry_error:
	fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
	CU_cleanup_registry();
	return 1;
}
