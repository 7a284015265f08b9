/*
 * config: the command line and the --config file into one struct
 * kage_config.
 *
 * Three passes, because flags come in any order and the file must lose to
 * the command line wherever --config appears on it:
 *   1. scan argv into (option, value) pairs without reading the values, so
 *      an unknown flag, --help and --version act before any value is judged;
 *   2. read the --config file into pairs of its own;
 *   3. apply the file's pairs, then the command line's (the first
 *      command-line occurrence of a repeatable option drops the file's
 *      values for it), then resolve what refers to other options: backend
 *      names in --set-header and --reference, the per-shadow defaults.
 *
 * Every option lives in one table (opts[]) that drives the scanner, the
 * file reader, config_describe() and config_usage(), so the four cannot
 * disagree about which options exist.
 */
#include "config.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#define KIB			1024ULL
#define MIB			(1024ULL * KIB)
#define GIB			(1024ULL * MIB)
#define TIB			(1024ULL * GIB)

#define SECONDS_MAX		86400.0
#define BODY_MAX_LIMIT		GIB	/* --shadow-body-max, body-max=, --capture-max */
#define MAX_SHADOWS		(KAGE_MAX_BACKENDS - 1)

/* Features whose options are parsed but not acted on yet. --help marks
 * them; delete a name here when its feature lands. */
/* Request headers that kage writes per hop, so a user edit would either be
 * overwritten or break the framing. */
static const char *const framing_headers[] = {
	"connection", "keep-alive", "proxy-connection", "te", "trailer",
	"transfer-encoding", "upgrade", "content-length", "host",
};

/* ---- the option table -------------------------------------------------- */

struct parser;
struct arg;
struct opt;

enum opt_group { G_LISTEN, G_BACKENDS, G_SHADOW, G_COMPARE, G_OPS, G_COUNT };

static const char *const group_titles[G_COUNT] = {
	"Listening", "Backends", "Shadowing", "Comparison", "Operations",
};

enum opt_type {
	T_UINT,		/* integer in [umin, umax] */
	T_POW2,		/* the same, then rounded up to a power of two */
	T_SIZE,		/* bytes, optional binary suffix, in [umin, umax] */
	T_SECONDS,	/* duration in (0, 86400], or [0, 86400] with OPT_ZERO */
	T_NUMBER,	/* decimal in [dmin, dmax] */
	T_PERCENT,	/* decimal in [0, 100], optional '%' */
	T_SWITCH,	/* bool field */
	T_LIST,		/* repeatable string, validated by check() */
	T_OTHER,	/* apply() and describe() do everything */
	T_ACTION,	/* acted on while scanning the command line */
};

#define OPT_REPEAT	0x01	/* repeatable */
#define OPT_CLI		0x02	/* command line only, not a settable key */
#define OPT_ZERO	0x04	/* T_SECONDS: 0 is allowed */
#define OPT_NOARG	0x08	/* takes no value on the command line */

struct opt {
	const char *name;
	char shortname;
	unsigned char group;
	unsigned char type;
	unsigned char flags;
	const char *metavar;
	const char *help;
	size_t off, size;	/* the field, for the generic types */
	uint64_t umin, umax;
	double dmin, dmax;
	int (*check)(struct parser *p, const struct arg *a);	/* T_LIST */
	int (*apply)(struct parser *p, const struct arg *a);	/* T_OTHER */
	void (*forget)(struct parser *p);			/* repeatable T_OTHER */
	void (*describe)(const struct kage_config *c, const struct opt *o, FILE *out);
};

/* One option occurrence, from argv or from a line of the file. */
struct arg {
	const struct opt *opt;
	char *flag;		/* as written: "--threads", "-t", or the file's key */
	char *value;		/* NULL for a switch given bare */
	bool on;		/* switches */
	const char *file;	/* NULL on the command line */
	unsigned line;
};

struct arglist {
	struct arg *v;
	unsigned n, cap;
};

/* A --master or --shadow value, kept apart until the globals its
 * overrides default to are known. */
struct backend_spec {
	struct cfg_backend b;
	bool has_sample, has_timeout, has_body_max;
	const struct arg *from;
};

struct edit_spec {
	struct cfg_header_edit e;
	char *backend;		/* "*" or a name, resolved at the end */
	const struct arg *from;
};

#define GIVEN_FILE	0x01
#define GIVEN_CLI	0x02
#define MAX_OPTS	64

struct parser {
	struct kage_config *cfg;
	char *err;
	size_t errlen;
	bool failed;

	const char *config_path;	/* argv string */
	char *config_flag;		/* "--config" as written */

	struct arglist cli, file;
	unsigned char given[MAX_OPTS];

	struct backend_spec master;
	unsigned nmaster_file, nmaster_cli;
	struct backend_spec shadows[MAX_SHADOWS];
	unsigned nshadows;

	struct edit_spec *edits;
	unsigned nedits, edits_cap;

	char *reference;
	const struct arg *reference_from;
};

/* ---- errors ------------------------------------------------------------- */

/* The first error wins; later ones are consequences. The line is kept to
 * one line whatever the user typed into a value. */
static int failv(struct parser *p, const char *file, unsigned line, const char *flag,
		 const char *fmt, va_list ap)
{
	if (p->failed)
		return -1;
	p->failed = true;
	if (!p->errlen)
		return -1;

	size_t n = 0;
	int w;
	if (file) {
		w = snprintf(p->err, p->errlen, "%s:%u: ", file, line);
		n = w < 0 ? 0 : MIN((size_t)w, p->errlen - 1);
	}
	if (flag) {
		w = snprintf(p->err + n, p->errlen - n, "%s: ", flag);
		n += w < 0 ? 0 : MIN((size_t)w, p->errlen - 1 - n);
	}
	vsnprintf(p->err + n, p->errlen - n, fmt, ap);
	for (char *c = p->err; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	return -1;
}

static int __attribute__((format(printf, 3, 4)))
fail(struct parser *p, const struct arg *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	failv(p, a ? a->file : NULL, a ? a->line : 0, a ? a->flag : NULL, fmt, ap);
	va_end(ap);
	return -1;
}

static int __attribute__((format(printf, 5, 6)))
fail_at(struct parser *p, const char *file, unsigned line, const char *flag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	failv(p, file, line, flag, fmt, ap);
	va_end(ap);
	return -1;
}

static int fail_oom(struct parser *p)
{
	return fail(p, NULL, "out of memory");
}

static char *dup_str(struct parser *p, const char *s)
{
	char *d = strdup(s);
	if (!d)
		fail_oom(p);
	return d;
}

static char *dup_span(struct parser *p, const char *s, size_t n)
{
	char *d = strndup(s, n);
	if (!d)
		fail_oom(p);
	return d;
}

/* ---- characters and numbers --------------------------------------------- */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }
static bool is_ctl(char c) { return (unsigned char)c < 0x20 || c == 0x7f; }

/* RFC 9110 tchar. */
static bool is_tchar(char c)
{
	return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!is_tchar(*s))
			return false;
	return true;
}

static bool has_ctl(const char *s)
{
	for (; *s; s++)
		if (is_ctl(*s))
			return true;
	return false;
}

static bool is_name_char(char c)
{
	return is_alpha(c) || is_digit(c) || c == '_' || c == '.' || c == '-';
}

static bool is_framing_header(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(framing_headers); i++)
		if (span_is(name, strlen(name), framing_headers[i]))
			return true;
	return false;
}

/* Decimal digits only: no sign, no spaces, no hex. */
static bool parse_uint(const char *s, size_t n, uint64_t *v)
{
	uint64_t x = 0;
	if (!n)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]) || x > (UINT64_MAX - 9) / 10)
			return false;
		x = x * 10 + (uint64_t)(s[i] - '0');
	}
	*v = x;
	return true;
}

/* [0-9]*.?[0-9]* with at least one digit. strtod alone would also take
 * "inf", "nan", hex and exponents, none of which belong in a timeout. */
static bool parse_decimal(const char *s, size_t n, double *v)
{
	char buf[64];
	size_t digits = 0, dots = 0;

	if (!n || n >= sizeof buf)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.')
			dots++;
		else if (is_digit(s[i]))
			digits++;
		else
			return false;
	}
	if (!digits || dots > 1)
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	*v = strtod(buf, NULL);
	return isfinite(*v);
}

static bool parse_size(const char *s, uint64_t *v)
{
	static const struct { const char *suffix; unsigned shift; } units[] = {
		{ "", 0 },
		{ "k", 10 }, { "K", 10 }, { "KiB", 10 },
		{ "m", 20 }, { "M", 20 }, { "MiB", 20 },
		{ "g", 30 }, { "G", 30 }, { "GiB", 30 },
	};
	size_t n = 0;
	uint64_t x;

	while (is_digit(s[n]))
		n++;
	if (!parse_uint(s, n, &x))
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcmp(s + n, units[i].suffix))
			continue;
		if (x > UINT64_MAX >> units[i].shift)
			return false;
		*v = x << units[i].shift;
		return true;
	}
	return false;
}

static bool parse_seconds(const char *s, double *v)
{
	size_t n = strlen(s);
	double scale = 1;

	if (n > 2 && !strcmp(s + n - 2, "ms")) {
		n -= 2;
		scale = 1e-3;
	} else if (n > 1 && s[n - 1] == 's') {
		n -= 1;
	}
	if (!parse_decimal(s, n, v))
		return false;
	*v *= scale;
	return true;
}

static bool parse_percent(const char *s, double *v)
{
	size_t n = strlen(s);
	if (n > 1 && s[n - 1] == '%')
		n--;
	return parse_decimal(s, n, v) && *v <= 100;
}

static bool seconds_ok(double v, bool zero_ok)
{
	return (zero_ok ? v >= 0 : v > 0) && v <= SECONDS_MAX;
}

static const char *seconds_want(bool zero_ok)
{
	return zero_ok ? "expected seconds from 0 to 86400 (like 10, 2.5 or 500ms)"
		       : "expected seconds above 0 and at most 86400 (like 10, 2.5 or 500ms)";
}

#define PERCENT_WANT "expected a percentage from 0 to 100"

/* "4 MiB" rather than 4194304 where it divides evenly. */
static void fmt_size(char *buf, size_t n, uint64_t v)
{
	if (v && v % TIB == 0)
		snprintf(buf, n, "%llu TiB", (unsigned long long)(v / TIB));
	else if (v && v % GIB == 0)
		snprintf(buf, n, "%llu GiB", (unsigned long long)(v / GIB));
	else if (v && v % MIB == 0)
		snprintf(buf, n, "%llu MiB", (unsigned long long)(v / MIB));
	else if (v && v % KIB == 0)
		snprintf(buf, n, "%llu KiB", (unsigned long long)(v / KIB));
	else
		snprintf(buf, n, "%llu bytes", (unsigned long long)v);
}

/* The shortest plain decimal that reads back as the same double, so
 * describe output survives a round trip and never uses an exponent (which
 * parse_decimal refuses). */
static void fmt_decimal(char *buf, size_t n, double v)
{
	for (int d = 0; d <= 64; d++) {
		snprintf(buf, n, "%.*f", d, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

static uint64_t round_pow2(uint64_t v)
{
	uint64_t r = 1;
	while (r < v)
		r <<= 1;
	return r;
}

/* ---- small containers ---------------------------------------------------- */

static int list_push(struct parser *p, struct cfg_list *l, const char *s)
{
	char **v = realloc(l->v, (l->n + 1) * sizeof *v);
	if (!v)
		return fail_oom(p);
	l->v = v;
	if (!(l->v[l->n] = dup_str(p, s)))
		return -1;
	l->n++;
	return 0;
}

static void list_clear(struct cfg_list *l)
{
	for (unsigned i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* The array `v` of `n` elements with room for one more (doubling *cap as
 * needed), or NULL with the error set; `v` is untouched then. */
static void *array_room(struct parser *p, void *v, unsigned n, unsigned *cap, size_t size)
{
	if (n < *cap)
		return v;
	unsigned ncap = *cap ? *cap * 2 : 8;
	void *nv = realloc(v, ncap * size);
	if (!nv) {
		fail_oom(p);
		return NULL;
	}
	*cap = ncap;
	return nv;
}

static struct arg *arglist_add(struct parser *p, struct arglist *l)
{
	struct arg *v = array_room(p, l->v, l->n, &l->cap, sizeof *v);
	if (!v)
		return NULL;
	l->v = v;
	struct arg *a = &v[l->n++];
	memset(a, 0, sizeof *a);
	return a;
}

static void arglist_free(struct arglist *l)
{
	for (unsigned i = 0; i < l->n; i++) {
		free(l->v[i].flag);
		free(l->v[i].value);
	}
	free(l->v);
}

static void *field_of(struct kage_config *c, const struct opt *o)
{
	return (char *)c + o->off;
}

static const void *cfield_of(const struct kage_config *c, const struct opt *o)
{
	return (const char *)c + o->off;
}

static void store_uint(void *field, size_t size, uint64_t v)
{
	if (size == sizeof(uint64_t))
		*(uint64_t *)field = v;
	else
		*(unsigned *)field = (unsigned)v;
}

static uint64_t load_uint(const void *field, size_t size)
{
	return size == sizeof(uint64_t) ? *(const uint64_t *)field : *(const unsigned *)field;
}

/* ---- addresses ------------------------------------------------------------ */

static void addr_format(struct cfg_addr *a)
{
	char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2], serv[8];

	if (getnameinfo((struct sockaddr *)&a->ss, a->len, host, sizeof host, serv, sizeof serv,
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(a->text, sizeof a->text, "?");
		return;
	}
	if (a->ss.ss_family == AF_INET6)
		snprintf(a->text, sizeof a->text, "[%s]:%s", host, serv);
	else
		snprintf(a->text, sizeof a->text, "%s:%s", host, serv);
}

static bool host_name_ok(const char *h)
{
	if (!*h || strlen(h) > 253)
		return false;
	for (; *h; h++)
		if (!is_name_char(*h))
			return false;
	return true;
}

/*
 * HOST:PORT, [V6]:PORT, and for listeners :PORT. `text` is a span of the
 * user's value; `host` (may be NULL) receives the host without brackets.
 */
static int addr_parse(struct parser *p, const struct arg *a, const char *text, size_t len,
		      bool listener, char *host, size_t hostlen, uint16_t *port_out,
		      struct cfg_addr *out)
{
	char buf[300], hbuf[300];
	const char *hs, *ps;
	size_t hn;
	bool bracketed = false;
	uint64_t port;
	const char *want = listener ? "expected HOST:PORT, [V6]:PORT or :PORT" : "expected HOST:PORT";

	if (len >= sizeof buf)
		return fail(p, a, "address too long: \"%.40s...\"", text);
	memcpy(buf, text, len);
	buf[len] = '\0';

	if (buf[0] == '[') {
		char *close = strchr(buf, ']');
		if (!close || close[1] != ':')
			return fail(p, a, "%s, got \"%s\"", want, buf);
		hs = buf + 1;
		hn = (size_t)(close - hs);
		ps = close + 2;
		bracketed = true;
	} else {
		char *colon = strrchr(buf, ':');
		if (!colon)
			return fail(p, a, "%s, got \"%s\"", want, buf);
		hs = buf;
		hn = (size_t)(colon - buf);
		ps = colon + 1;
		if (memchr(hs, ':', hn))
			return fail(p, a, "put IPv6 addresses in brackets, like [::1]:8090, got \"%s\"",
				    buf);
	}
	if (!parse_uint(ps, strlen(ps), &port) || port > 65535 || (!listener && port == 0))
		return fail(p, a, "expected a port from %d to 65535, got \"%s\"", listener ? 0 : 1, buf);

	memcpy(hbuf, hs, hn);
	hbuf[hn] = '\0';
	if (!hn) {
		if (bracketed || !listener)
			return fail(p, a, "%s, got \"%s\"", want, buf);
		strcpy(hbuf, "0.0.0.0");
	} else if (!bracketed && !host_name_ok(hbuf)) {
		return fail(p, a, "\"%s\" is not a host name or address", hbuf);
	}

	struct addrinfo hints = {
		.ai_family = bracketed ? AF_INET6 : AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV | (bracketed ? AI_NUMERICHOST : 0) |
			    (listener ? AI_PASSIVE : 0),
	};
	struct addrinfo *res;
	char pbuf[8];
	snprintf(pbuf, sizeof pbuf, "%u", (unsigned)port);
	int rc = getaddrinfo(hbuf, pbuf, &hints, &res);
	if (rc)
		return fail(p, a, "cannot resolve \"%s%s%s\": %s", bracketed ? "[" : "", hbuf,
			    bracketed ? "]" : "", rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
	if (res->ai_addrlen > sizeof out->ss) {
		freeaddrinfo(res);
		return fail(p, a, "cannot use the address of \"%s\"", hbuf);
	}
	memset(out, 0, sizeof *out);
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	addr_format(out);

	if (host)
		snprintf(host, hostlen, "%s", hbuf);
	if (port_out)
		*port_out = (uint16_t)port;
	return 0;
}

static void addr_default_listen(struct cfg_addr *a)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

	memset(a, 0, sizeof *a);
	sin->sin_family = AF_INET;
	sin->sin_port = htons(8090);
	sin->sin_addr.s_addr = htonl(INADDR_ANY);
	a->len = sizeof *sin;
	addr_format(a);
}

/* ---- appliers: one per option that is not a plain number ------------------ */

static int apply_listen(struct parser *p, const struct arg *a)
{
	return addr_parse(p, a, a->value, strlen(a->value), true, NULL, 0, NULL, &p->cfg->listen);
}

static int apply_admin(struct parser *p, const struct arg *a)
{
	p->cfg->admin_enabled = false;
	if (!*a->value)
		return 0;
	if (addr_parse(p, a, a->value, strlen(a->value), true, NULL, 0, NULL, &p->cfg->admin))
		return -1;
	p->cfg->admin_enabled = true;
	return 0;
}

static int backend_name_check(struct parser *p, const struct arg *a, const char *name, size_t n)
{
	if (n >= KAGE_NAME_MAX)
		return fail(p, a, "backend name \"%.*s\" is longer than %d characters", (int)n, name,
			    KAGE_NAME_MAX - 1);
	for (size_t i = 0; i < n; i++)
		if (!is_name_char(name[i]))
			return fail(p, a, "backend name \"%.*s\" may only hold letters, digits, '_', '.' and '-'",
				    (int)n, name);
	return 0;
}

/* One `key=value` of a --shadow value after the address. */
static int backend_option(struct parser *p, const struct arg *a, struct backend_spec *s,
			  const char *item, size_t n)
{
	char buf[80];
	const char *eq = memchr(item, '=', n);
	size_t kn = eq ? (size_t)(eq - item) : n;

	if (n >= sizeof buf)
		return fail(p, a, "per-shadow option too long: \"%.20s...\"", item);
	if (!eq)
		return fail(p, a, "expected OPTION=VALUE after the address (sample=, timeout=, body-max=), got \"%.*s\"",
			    (int)n, item);
	memcpy(buf, eq + 1, n - kn - 1);
	buf[n - kn - 1] = '\0';

	if (kn == 6 && !memcmp(item, "sample", 6)) {
		if (s->has_sample)
			return fail(p, a, "sample= given twice");
		if (!parse_percent(buf, &s->b.sample))
			return fail(p, a, "sample: " PERCENT_WANT ", got \"%s\"", buf);
		s->has_sample = true;
	} else if (kn == 7 && !memcmp(item, "timeout", 7)) {
		if (s->has_timeout)
			return fail(p, a, "timeout= given twice");
		if (!parse_seconds(buf, &s->b.timeout) || !seconds_ok(s->b.timeout, false))
			return fail(p, a, "timeout: %s, got \"%s\"", seconds_want(false), buf);
		s->has_timeout = true;
	} else if (kn == 8 && !memcmp(item, "body-max", 8)) {
		char hi[32];
		if (s->has_body_max)
			return fail(p, a, "body-max= given twice");
		fmt_size(hi, sizeof hi, BODY_MAX_LIMIT);
		if (!parse_size(buf, &s->b.body_max) || s->b.body_max > BODY_MAX_LIMIT)
			return fail(p, a, "body-max: expected a size from 0 to %s, got \"%s\"", hi, buf);
		s->has_body_max = true;
	} else {
		return fail(p, a, "unknown per-shadow option \"%.*s\" (sample=, timeout=, body-max=)",
			    (int)kn, item);
	}
	return 0;
}

/* NAME=HOST:PORT[,OPT=V]... */
static int backend_parse(struct parser *p, const struct arg *a, bool master, struct backend_spec *s)
{
	const char *v = a->value;
	const char *eq = strchr(v, '=');
	const char *want = master ? "NAME=HOST:PORT" : "NAME=HOST:PORT[,OPTION=VALUE]...";

	memset(s, 0, sizeof *s);
	s->from = a;
	if (!eq || eq == v)
		return fail(p, a, "expected %s, got \"%s\"", want, v);
	if (backend_name_check(p, a, v, (size_t)(eq - v)))
		return -1;
	memcpy(s->b.name, v, (size_t)(eq - v));

	const char *addr = eq + 1;
	const char *comma = strchr(addr, ',');
	size_t alen = comma ? (size_t)(comma - addr) : strlen(addr);
	if (master && comma)
		return fail(p, a, "the master takes no per-backend options (those are for --shadow), got \"%s\"", v);
	if (!alen)
		return fail(p, a, "expected %s, got \"%s\"", want, v);
	if (addr_parse(p, a, addr, alen, false, s->b.host, sizeof s->b.host, &s->b.port, &s->b.addr))
		return -1;

	while (comma) {
		const char *item = comma + 1;
		comma = strchr(item, ',');
		size_t n = comma ? (size_t)(comma - item) : strlen(item);
		if (backend_option(p, a, s, item, n))
			return -1;
	}
	s->b.master = master;
	return 0;
}

static int apply_master(struct parser *p, const struct arg *a)
{
	unsigned *count = a->file ? &p->nmaster_file : &p->nmaster_cli;

	if (*count)
		return fail(p, a, "given twice (there is one master; the others are --shadow)");
	(*count)++;
	return backend_parse(p, a, true, &p->master);
}

static int apply_shadow(struct parser *p, const struct arg *a)
{
	if (p->nshadows == MAX_SHADOWS)
		return fail(p, a, "at most %d shadows", MAX_SHADOWS);
	if (backend_parse(p, a, false, &p->shadows[p->nshadows]))
		return -1;
	p->nshadows++;
	return 0;
}

static void forget_shadows(struct parser *p)
{
	p->nshadows = 0;
}

static int apply_pin_cpus(struct parser *p, const struct arg *a)
{
	struct kage_config *c = p->cfg;
	long conf = sysconf(_SC_NPROCESSORS_CONF);
	uint64_t limit = conf > 0 && conf < CPU_SETSIZE ? (uint64_t)conf : CPU_SETSIZE;
	const char *s = a->value;
	int *v = NULL;
	unsigned n = 0;

	free(c->pin_cpus);
	c->pin_cpus = NULL;
	c->npin_cpus = 0;
	if (!*s)
		return 0;

	/* No duplicates, so the list is bounded by `limit`. */
	v = malloc(limit * sizeof *v);
	if (!v)
		return fail_oom(p);
	for (;;) {
		const char *end = strchr(s, ',');
		size_t len = end ? (size_t)(end - s) : strlen(s);
		const char *dash = memchr(s, '-', len);
		uint64_t lo, hi;

		if (dash ? !parse_uint(s, (size_t)(dash - s), &lo) ||
			   !parse_uint(dash + 1, len - (size_t)(dash - s) - 1, &hi) || hi < lo
			 : !parse_uint(s, len, &lo)) {
			free(v);
			return fail(p, a, "expected CPU numbers and ranges like 0,2,4 or 0-3, got \"%s\"",
				    a->value);
		}
		if (!dash)
			hi = lo;
		if (hi >= limit) {
			free(v);
			return fail(p, a, "CPU %llu does not exist (CPUs 0 to %llu are configured)",
				    (unsigned long long)hi, (unsigned long long)limit - 1);
		}
		for (uint64_t cpu = lo; cpu <= hi; cpu++) {
			for (unsigned i = 0; i < n; i++) {
				if (v[i] == (int)cpu) {
					free(v);
					return fail(p, a, "CPU %llu listed twice", (unsigned long long)cpu);
				}
			}
			v[n++] = (int)cpu;
		}
		if (!end)
			break;
		s = end + 1;
	}
	c->pin_cpus = v;
	c->npin_cpus = n;
	return 0;
}

static int apply_shadow_methods(struct parser *p, const struct arg *a)
{
	struct cfg_list *l = &p->cfg->shadow_methods;
	const char *s = a->value;

	list_clear(l);
	for (;;) {
		const char *end = strchr(s, ',');
		size_t len = end ? (size_t)(end - s) : strlen(s);
		char m[64];
		bool seen = false;

		while (len && is_space(*s))
			s++, len--;
		while (len && is_space(s[len - 1]))
			len--;
		if (!len)
			return fail(p, a, "expected a comma-separated list of methods like GET,HEAD, got \"%s\"",
				    a->value);
		if (len >= sizeof m)
			return fail(p, a, "\"%.*s\" is not an HTTP method", (int)len, s);
		for (size_t i = 0; i < len; i++) {
			if (!is_tchar(s[i]))
				return fail(p, a, "\"%.*s\" is not an HTTP method", (int)len, s);
			m[i] = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 32) : s[i];
		}
		m[len] = '\0';
		for (unsigned i = 0; i < l->n && !seen; i++)
			seen = !strcmp(l->v[i], m);
		if (!seen && list_push(p, l, m))
			return -1;
		if (!end)
			break;
		s = end + 1;
	}
	return 0;
}

static int apply_sample_key(struct parser *p, const struct arg *a)
{
	static const struct { const char *prefix; enum cfg_sample_key key; } kinds[] = {
		{ "header:", SAMPLE_HEADER }, { "cookie:", SAMPLE_COOKIE }, { "query:", SAMPLE_QUERY },
	};
	struct kage_config *c = p->cfg;
	const char *v = a->value;

	free(c->sample_key_name);
	c->sample_key_name = NULL;
	c->sample_key = SAMPLE_RANDOM;
	if (!strcmp(v, "random"))
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
		size_t n = strlen(kinds[i].prefix);
		if (strncmp(v, kinds[i].prefix, n))
			continue;
		const char *name = v + n;
		/* Query parameter names are not tokens, but must not hold what
		 * delimits them. */
		bool ok = kinds[i].key == SAMPLE_QUERY
			  ? *name && !has_ctl(name) && !strpbrk(name, "&=#; ")
			  : is_token(name);
		if (!ok)
			return fail(p, a, "\"%s\" is not a valid %.*s name", name, (int)n - 1, v);
		c->sample_key = kinds[i].key;
		c->sample_key_name = dup_str(p, name);
		return c->sample_key_name ? 0 : -1;
	}
	return fail(p, a, "expected random, header:NAME, cookie:NAME or query:NAME, got \"%s\"", v);
}

static struct edit_spec *edit_add(struct parser *p)
{
	struct edit_spec *v = array_room(p, p->edits, p->nedits, &p->edits_cap, sizeof *v);
	if (!v)
		return NULL;
	p->edits = v;
	struct edit_spec *e = &v[p->nedits++];
	memset(e, 0, sizeof *e);
	return e;
}

static void edit_free(struct edit_spec *e)
{
	free(e->backend);
	free(e->e.name);
	free(e->e.value);
}

/* BACKEND=Name: value, or BACKEND=Name for a removal. */
static int apply_header_edit(struct parser *p, const struct arg *a, bool remove)
{
	const char *v = a->value;
	const char *eq = strchr(v, '=');
	const char *want = remove ? "BACKEND=Name" : "BACKEND=Name: value";
	const char *what = remove ? "removed" : "set";

	if (!eq || eq == v)
		return fail(p, a, "expected %s (BACKEND a name or *), got \"%s\"", want, v);
	size_t bn = (size_t)(eq - v);
	if (!(bn == 1 && *v == '*') && backend_name_check(p, a, v, bn))
		return -1;

	const char *name = eq + 1;
	const char *colon = remove ? NULL : strchr(name, ':');
	size_t nn = remove ? strlen(name) : colon ? (size_t)(colon - name) : 0;
	if (!remove && !colon)
		return fail(p, a, "expected %s, got \"%s\"", want, v);

	char *hname = dup_span(p, name, nn);
	if (!hname)
		return -1;
	if (!is_token(hname)) {
		fail(p, a, "\"%s\" is not a header name", hname);
		free(hname);
		return -1;
	}
	if (is_framing_header(hname)) {
		fail(p, a, "\"%s\" cannot be %s: kage frames each hop itself%s", hname, what,
		     span_is(hname, strlen(hname), "host") ? " and keeps Host as the client sent it" : "");
		free(hname);
		return -1;
	}

	char *value = NULL;
	if (!remove) {
		const char *vs = colon + 1;
		size_t vn = strlen(vs);
		while (vn && is_space(*vs))
			vs++, vn--;
		while (vn && is_space(vs[vn - 1]))
			vn--;
		for (size_t i = 0; i < vn; i++) {
			if (is_ctl(vs[i]) && vs[i] != '\t') {
				fail(p, a, "the value of \"%s\" holds a control character (CR, LF...)", hname);
				free(hname);
				return -1;
			}
		}
		if (!(value = dup_span(p, vs, vn))) {
			free(hname);
			return -1;
		}
	}

	struct edit_spec *e = edit_add(p);
	char *backend = e ? dup_span(p, v, bn) : NULL;
	if (!backend) {
		if (e)
			p->nedits--;
		free(hname);
		free(value);
		return -1;
	}
	e->backend = backend;
	e->from = a;
	e->e.remove = remove;
	e->e.name = hname;
	e->e.value = value;
	return 0;
}

static int apply_set_header(struct parser *p, const struct arg *a)
{
	return apply_header_edit(p, a, false);
}

static int apply_remove_header(struct parser *p, const struct arg *a)
{
	return apply_header_edit(p, a, true);
}

static void forget_edits(struct parser *p, bool remove)
{
	unsigned n = 0;

	for (unsigned i = 0; i < p->nedits; i++) {
		if (p->edits[i].e.remove == remove)
			edit_free(&p->edits[i]);
		else
			p->edits[n++] = p->edits[i];
	}
	p->nedits = n;
}

static void forget_set_headers(struct parser *p)
{
	forget_edits(p, false);
}

static void forget_remove_headers(struct parser *p)
{
	forget_edits(p, true);
}

static int replace_str(struct parser *p, char **field, const char *v)
{
	char *d = dup_str(p, v);
	if (!d)
		return -1;
	free(*field);
	*field = d;
	return 0;
}

static int apply_session_header(struct parser *p, const struct arg *a)
{
	const char *v = a->value;

	if (*v && !is_token(v))
		return fail(p, a, "\"%s\" is not a header name (an empty value disables it)", v);
	if (*v && is_framing_header(v))
		return fail(p, a, "\"%s\" cannot be used: kage frames each hop itself", v);
	return replace_str(p, &p->cfg->session_header, v);
}

static int apply_reference(struct parser *p, const struct arg *a)
{
	free(p->reference);
	p->reference = NULL;
	p->reference_from = NULL;
	if (!*a->value)
		return 0;
	if (backend_name_check(p, a, a->value, strlen(a->value)))
		return -1;
	p->reference_from = a;
	return (p->reference = dup_str(p, a->value)) ? 0 : -1;
}

/*
 * A path may not start or end with white space: such a path is almost
 * surely a quoting slip, and the --config reader trims values, so --check
 * output could not give the same path back.
 */
static int path_check(struct parser *p, const struct arg *a, bool off_ok)
{
	const char *v = a->value;
	size_t n = strlen(v);
	if (!n && !off_ok)
		return fail(p, a, "needs a path");
	if (has_ctl(v))
		return fail(p, a, "the path holds a control character");
	if (n && (v[0] == ' ' || v[n - 1] == ' '))
		return fail(p, a, "the path starts or ends with a space");
	return 0;
}

static int apply_diff_log(struct parser *p, const struct arg *a)
{
	if (path_check(p, a, false))
		return -1;
	return replace_str(p, &p->cfg->diff_log, a->value);
}

static int apply_access_log(struct parser *p, const struct arg *a)
{
	if (path_check(p, a, true))
		return -1;
	free(p->cfg->access_log);
	p->cfg->access_log = NULL;
	return *a->value ? replace_str(p, &p->cfg->access_log, a->value) : 0;
}

/* FILE ends at the first ".so" followed by ':' or the end, so a directory
 * may hold ':' and ARG may hold anything, '/' and ':' included. Without
 * such a ".so" the whole value is the file. */
static int apply_plugin(struct parser *p, const struct arg *a)
{
	struct kage_config *c = p->cfg;
	const char *v = a->value, *cut = NULL;

	if (path_check(p, a, true))
		return -1;
	free(c->plugin_path);
	free(c->plugin_arg);
	c->plugin_path = c->plugin_arg = NULL;
	if (!*v)
		return 0;
	for (const char *q = strstr(v, ".so"); q; q = strstr(q + 1, ".so")) {
		if (q[3] == ':' || q[3] == '\0') {
			cut = q + 3;
			break;
		}
	}
	if (!cut || !*cut)
		return (c->plugin_path = dup_str(p, v)) ? 0 : -1;
	if (!(c->plugin_path = dup_span(p, v, (size_t)(cut - v))))
		return -1;
	return (c->plugin_arg = dup_str(p, cut + 1)) ? 0 : -1;
}

static int apply_debug(struct parser *p, const struct arg *a)
{
	if (a->on)
		p->cfg->log_level = LOG_DEBUG;
	else if (p->cfg->log_level == LOG_DEBUG)
		p->cfg->log_level = LOG_INFO;
	return 0;
}

static int apply_quiet(struct parser *p, const struct arg *a)
{
	if (a->on)
		p->cfg->log_level = LOG_WARN;
	else if (p->cfg->log_level == LOG_WARN)
		p->cfg->log_level = LOG_INFO;
	return 0;
}

/* ---- T_LIST validators ------------------------------------------------------ */

static int check_path_prefix(struct parser *p, const struct arg *a)
{
	const char *v = a->value;

	if (*v != '/')
		return fail(p, a, "expected a path prefix starting with '/', got \"%s\"", v);
	for (; *v; v++)
		if (is_ctl(*v) || *v == ' ')
			return fail(p, a, "a path prefix holds no spaces or control characters");
	return 0;
}

static int check_header_name(struct parser *p, const struct arg *a)
{
	if (!is_token(a->value))
		return fail(p, a, "\"%s\" is not a header name", a->value);
	return 0;
}

/* RFC 6901: empty, or '/'-separated segments where '~' only starts ~0 or ~1. */
static int check_json_pointer(struct parser *p, const struct arg *a)
{
	const char *v = a->value;

	if (*v && *v != '/')
		return fail(p, a, "a JSON Pointer is empty or starts with '/', got \"%s\"", v);
	for (; *v; v++) {
		if (*v == '~' && v[1] != '0' && v[1] != '1')
			return fail(p, a, "'~' must be followed by 0 or 1 in a JSON Pointer, got \"%s\"",
				    a->value);
		if (is_ctl(*v))
			return fail(p, a, "the JSON Pointer holds a control character");
	}
	/* As for paths: almost surely a quoting slip, and --config trims it. */
	if (v > a->value && v[-1] == ' ')
		return fail(p, a, "the JSON Pointer ends with a space");
	return 0;
}

/* ---- describers ----------------------------------------------------------- */

static void put_line(FILE *out, const char *key, const char *value)
{
	if (*value)
		fprintf(out, "%s = %s\n", key, value);
	else
		fprintf(out, "%s =\n", key);
}

static void describe_addr(const struct kage_config *c, const struct opt *o, FILE *out)
{
	const struct cfg_addr *a = cfield_of(c, o);
	put_line(out, o->name, a->text);
}

static void describe_admin(const struct kage_config *c, const struct opt *o, FILE *out)
{
	put_line(out, o->name, c->admin_enabled ? c->admin.text : "");
}

static void describe_master(const struct kage_config *c, const struct opt *o, FILE *out)
{
	if (c->nbackends)
		fprintf(out, "%s = %s=%s\n", o->name, c->backends[0].name, c->backends[0].addr.text);
}

static void describe_shadows(const struct kage_config *c, const struct opt *o, FILE *out)
{
	if (c->nbackends < 2)
		fprintf(out, "# %s: none\n", o->name);
	for (unsigned i = 1; i < c->nbackends; i++) {
		const struct cfg_backend *b = &c->backends[i];
		char sample[80], timeout[80];
		fmt_decimal(sample, sizeof sample, b->sample);
		fmt_decimal(timeout, sizeof timeout, b->timeout);
		fprintf(out, "%s = %s=%s,sample=%s,timeout=%s,body-max=%llu\n", o->name, b->name,
			b->addr.text, sample, timeout, (unsigned long long)b->body_max);
	}
}

static void describe_pin_cpus(const struct kage_config *c, const struct opt *o, FILE *out)
{
	fprintf(out, "%s =", o->name);
	for (unsigned i = 0; i < c->npin_cpus;) {
		unsigned j = i;
		while (j + 1 < c->npin_cpus && c->pin_cpus[j + 1] == c->pin_cpus[j] + 1)
			j++;
		fprintf(out, "%s%d", i ? "," : " ", c->pin_cpus[i]);
		if (j > i)
			fprintf(out, "-%d", c->pin_cpus[j]);
		i = j + 1;
	}
	fputc('\n', out);
}

static void describe_methods(const struct kage_config *c, const struct opt *o, FILE *out)
{
	fprintf(out, "%s =", o->name);
	for (unsigned i = 0; i < c->shadow_methods.n; i++)
		fprintf(out, "%s%s", i ? "," : " ", c->shadow_methods.v[i]);
	fputc('\n', out);
}

static void describe_sample_key(const struct kage_config *c, const struct opt *o, FILE *out)
{
	static const char *const kinds[] = { "random", "header", "cookie", "query" };

	if (c->sample_key == SAMPLE_RANDOM || !c->sample_key_name)
		put_line(out, o->name, "random");
	else
		fprintf(out, "%s = %s:%s\n", o->name, kinds[c->sample_key], c->sample_key_name);
}

/* Sets and removals share one ordered list, so both are written here, in
 * order, and remove-header writes nothing of its own. */
static void describe_edits(const struct kage_config *c, const struct opt *o, FILE *out)
{
	if (!c->nedits)
		fprintf(out, "# set-header, remove-header: none\n");
	for (unsigned i = 0; i < c->nedits; i++) {
		const struct cfg_header_edit *e = &c->edits[i];
		const char *backend = e->backend < 0 ? "*" : c->backends[e->backend].name;
		if (e->remove)
			fprintf(out, "remove-header = %s=%s\n", backend, e->name);
		else if (e->value && *e->value)
			fprintf(out, "set-header = %s=%s: %s\n", backend, e->name, e->value);
		else
			fprintf(out, "set-header = %s=%s:\n", backend, e->name);
	}
}

static void describe_nothing(const struct kage_config *c, const struct opt *o, FILE *out)
{
}

static void describe_string(const struct kage_config *c, const struct opt *o, FILE *out)
{
	const char *const *s = cfield_of(c, o);
	put_line(out, o->name, *s ? *s : "");
}

static void describe_reference(const struct kage_config *c, const struct opt *o, FILE *out)
{
	bool set = c->reference >= 0 && (unsigned)c->reference < c->nbackends;
	put_line(out, o->name, set ? c->backends[c->reference].name : "");
}

static void describe_plugin(const struct kage_config *c, const struct opt *o, FILE *out)
{
	if (!c->plugin_path)
		put_line(out, o->name, "");
	else if (c->plugin_arg)
		fprintf(out, "%s = %s:%s\n", o->name, c->plugin_path, c->plugin_arg);
	else
		put_line(out, o->name, c->plugin_path);
}

static void describe_debug(const struct kage_config *c, const struct opt *o, FILE *out)
{
	put_line(out, o->name, c->log_level == LOG_DEBUG ? "true" : "false");
}

static void describe_quiet(const struct kage_config *c, const struct opt *o, FILE *out)
{
	put_line(out, o->name, c->log_level == LOG_WARN ? "true" : "false");
}

/* ---- the table ------------------------------------------------------------------ */

#define FIELD(f) .off = offsetof(struct kage_config, f), .size = sizeof(((struct kage_config *)0)->f)

static const struct opt opts[] = {
	/* Listening */
	{ .name = "listen", .shortname = 'l', .group = G_LISTEN, .type = T_OTHER, .metavar = "ADDR",
	  FIELD(listen), .apply = apply_listen, .describe = describe_addr,
	  .help = "where clients connect: HOST:PORT, [V6]:PORT or :PORT (every IPv4 "
		  "address); port 0 takes any free port (default 0.0.0.0:8090)" },
	{ .name = "threads", .shortname = 't', .group = G_LISTEN, .type = T_UINT, .metavar = "N",
	  FIELD(threads), .umin = 1, .umax = 1024,
	  .help = "shard threads, each with its own ring and SO_REUSEPORT listening "
		  "socket, 1 to 1024 (default: the online CPUs)" },
	{ .name = "pin-cpus", .group = G_LISTEN, .type = T_OTHER, .metavar = "LIST",
	  .apply = apply_pin_cpus, .describe = describe_pin_cpus,
	  .help = "pin shard i to the i-th CPU of LIST (0,2,4 or 0-3 or 0-1,4), "
		  "starting over from the first when LIST is shorter than --threads "
		  "(default: off)" },
	{ .name = "ring-entries", .group = G_LISTEN, .type = T_POW2, .metavar = "N",
	  FIELD(ring_entries), .umin = 1, .umax = 32768,
	  .help = "submission queue entries per shard, 1 to 32768, rounded up to a "
		  "power of two (default 4096)" },
	{ .name = "buffers", .group = G_LISTEN, .type = T_POW2, .metavar = "N",
	  FIELD(buffers), .umin = 1, .umax = 32768,
	  .help = "provided receive buffers per shard for master responses, and as "
		  "many for client requests (half as many for shadow responses), 1 to "
		  "32768, rounded up to a power of two (default 512)" },
	{ .name = "buffer-size", .group = G_LISTEN, .type = T_SIZE, .metavar = "BYTES",
	  FIELD(buffer_size), .umin = 512, .umax = 4 * MIB,
	  .help = "bytes per buffer for master responses, 512 to 4 MiB; buffers for "
		  "client requests and shadow responses hold at most 16 KiB "
		  "(default 64 KiB)" },
	{ .name = "max-conns", .group = G_LISTEN, .type = T_UINT, .metavar = "N",
	  FIELD(max_conns), .umin = 1, .umax = 1048576,
	  .help = "client connections per shard, 1 to 1048576; beyond it accept "
		  "backs off (default 65536)" },
	{ .name = "client-timeout", .group = G_LISTEN, .type = T_SECONDS, .metavar = "SEC",
	  FIELD(client_timeout),
	  .help = "closes an idle keep-alive connection, or answers 408 to a client "
		  "too slow sending a request (default 15)" },
	{ .name = "send-zc", .group = G_LISTEN, .type = T_SWITCH, .flags = OPT_NOARG,
	  FIELD(send_zc),
	  .help = "send large master bodies with SEND_ZC (default off)" },

	/* Backends */
	{ .name = "master", .shortname = 'm', .group = G_BACKENDS, .type = T_OTHER,
	  .metavar = "NAME=HOST:PORT", .apply = apply_master, .describe = describe_master,
	  .help = "the backend whose responses clients get; required, exactly once" },
	{ .name = "shadow", .shortname = 's', .group = G_BACKENDS, .type = T_OTHER, .flags = OPT_REPEAT,
	  .metavar = "NAME=HOST:PORT[,OPT=V]...", .apply = apply_shadow, .forget = forget_shadows,
	  .describe = describe_shadows,
	  .help = "a backend that gets copies of requests; repeatable, up to 15; "
		  "backends may share HOST:PORT. OPT=V overrides a global for this "
		  "shadow: sample=PERCENT, timeout=SEC, body-max=BYTES (default none)" },
	{ .name = "backend-timeout", .group = G_BACKENDS, .type = T_SECONDS, .metavar = "SEC",
	  FIELD(backend_timeout),
	  .help = "connect or response stall from master (default 10)" },
	{ .name = "shadow-timeout", .group = G_BACKENDS, .type = T_SECONDS, .metavar = "SEC",
	  FIELD(shadow_timeout),
	  .help = "connect or response stall from a shadow (default: --backend-timeout)" },

	/* Shadowing */
	{ .name = "shadow-methods", .group = G_SHADOW, .type = T_OTHER, .metavar = "LIST",
	  .apply = apply_shadow_methods, .describe = describe_methods,
	  .help = "comma-separated methods that may be shadowed (default GET,HEAD)" },
	{ .name = "shadow-path", .group = G_SHADOW, .type = T_LIST, .flags = OPT_REPEAT,
	  .metavar = "PREFIX", FIELD(shadow_paths), .check = check_path_prefix,
	  .help = "repeatable; only request targets starting with a PREFIX are "
		  "shadowed (default: all)" },
	{ .name = "shadow-sample", .group = G_SHADOW, .type = T_PERCENT, .metavar = "PERCENT",
	  FIELD(shadow_sample),
	  .help = "share of eligible requests shadowed, 0 to 100, decimals allowed "
		  "(default 100)" },
	{ .name = "shadow-sample-key", .group = G_SHADOW, .type = T_OTHER, .metavar = "SRC",
	  .apply = apply_sample_key, .describe = describe_sample_key,
	  .help = "random, or header:NAME, cookie:NAME or query:NAME to sample by a "
		  "hash of that value, so one user's traffic is shadowed whole or not "
		  "at all (default random)" },
	{ .name = "shadow-max-inflight", .group = G_SHADOW, .type = T_UINT, .metavar = "N",
	  FIELD(shadow_max_inflight), .umin = 1, .umax = 1048576,
	  .help = "shadowed requests in flight per shard (sent, not yet answered), "
		  "1 to 1048576; beyond it shadows are skipped and counted as "
		  "overload. Records waiting for the comparator do not count: at most "
		  "4096 per shard wait, beyond that shadows are skipped as queue_full "
		  "(default 1024)" },
	{ .name = "shadow-body-max", .group = G_SHADOW, .type = T_SIZE, .metavar = "BYTES",
	  FIELD(shadow_body_max), .umin = 0, .umax = BODY_MAX_LIMIT,
	  .help = "a request body larger than this is not shadowed (counted), up to "
		  "1 GiB (default 1 MiB)" },
	{ .name = "shadow-memory", .group = G_SHADOW, .type = T_SIZE, .metavar = "BYTES",
	  FIELD(shadow_memory), .umin = MIB, .umax = TIB,
	  .help = "memory per shard for request copies and captured responses, "
		  "1 MiB to 1 TiB; beyond it shadows are dropped and counted "
		  "(default 64 MiB)" },
	{ .name = "set-header", .group = G_SHADOW, .type = T_OTHER, .flags = OPT_REPEAT,
	  .metavar = "'BACKEND=Name: value'", .apply = apply_set_header,
	  .forget = forget_set_headers, .describe = describe_edits,
	  .help = "repeatable; set (replace) a request header on requests to "
		  "BACKEND, * for every backend (default none)" },
	{ .name = "remove-header", .group = G_SHADOW, .type = T_OTHER, .flags = OPT_REPEAT,
	  .metavar = "'BACKEND=Name'", .apply = apply_remove_header,
	  .forget = forget_remove_headers, .describe = describe_nothing,
	  .help = "repeatable; remove a request header on requests to BACKEND, * "
		  "for every backend. Neither may touch Host, Content-Length or a "
		  "hop-by-hop header (default none)" },
	{ .name = "session-header", .group = G_SHADOW, .type = T_OTHER, .metavar = "NAME",
	  FIELD(session_header), .apply = apply_session_header, .describe = describe_string,
	  .help = "per-request id sent to every backend of a shadowed request; an "
		  "empty NAME disables it (default X-Kage-Session)" },

	/* Comparison */
	{ .name = "capture-max", .group = G_COMPARE, .type = T_SIZE, .metavar = "BYTES",
	  FIELD(capture_max), .umin = 0, .umax = BODY_MAX_LIMIT,
	  .help = "bytes of each response body kept for diffing, up to 1 GiB; beyond "
		  "it the length and a hash of the whole body are still compared "
		  "(default 1 MiB)" },
	{ .name = "ignore-header", .group = G_COMPARE, .type = T_LIST, .flags = OPT_REPEAT,
	  .metavar = "NAME", FIELD(ignore_headers), .check = check_header_name,
	  .help = "repeatable; a response header left out of the comparison, besides "
		  "Date and the hop-by-hop and framing headers, which always are "
		  "(default none)" },
	{ .name = "ignore-json", .group = G_COMPARE, .type = T_LIST, .flags = OPT_REPEAT,
	  .metavar = "PTR", FIELD(ignore_json), .check = check_json_pointer,
	  .help = "repeatable; a JSON Pointer (RFC 6901) left out of JSON body "
		  "comparison, * matching any one segment (default none)" },
	{ .name = "reference", .group = G_COMPARE, .type = T_OTHER, .metavar = "NAME",
	  .apply = apply_reference, .describe = describe_reference,
	  .help = "a shadow running master's code: what differs between master and "
		  "it is noise, not reported against the other shadows (default none)" },
	{ .name = "noise-relative", .group = G_COMPARE, .type = T_NUMBER, .metavar = "R",
	  FIELD(noise_relative), .dmin = 0, .dmax = INFINITY,
	  .help = "a place is reported when the shadow differs there more than "
		  "(1 + R) times as often as the reference (default 0.2)" },
	{ .name = "noise-absolute", .group = G_COMPARE, .type = T_NUMBER, .metavar = "A",
	  FIELD(noise_absolute), .dmin = 0, .dmax = 1,
	  .help = "... and by more than A of the endpoint's requests, 0 to 1 "
		  "(default 0.0003)" },
	{ .name = "redact-header", .group = G_COMPARE, .type = T_LIST, .flags = OPT_REPEAT,
	  .metavar = "NAME", FIELD(redact_headers), .check = check_header_name,
	  .help = "repeatable; a header whose values never appear in any output, "
		  "besides Authorization, Cookie, Set-Cookie and Proxy-Authorization, "
		  "which always are (default none)" },
	{ .name = "diff-log", .group = G_COMPARE, .type = T_OTHER, .metavar = "PATH",
	  FIELD(diff_log), .apply = apply_diff_log, .describe = describe_string,
	  .help = "comparison records as JSON lines, - for stdout (default -)" },
	{ .name = "diff-log-all", .group = G_COMPARE, .type = T_SWITCH, .flags = OPT_NOARG,
	  FIELD(diff_log_all),
	  .help = "also log records that match (default: only mismatches and errors)" },

	/* Operations */
	{ .name = "admin", .group = G_OPS, .type = T_OTHER, .metavar = "ADDR",
	  .apply = apply_admin, .describe = describe_admin,
	  .help = "admin HTTP listener for /metrics, /stats, /healthz and the / "
		  "dashboard, ADDR as for --listen (default off)" },
	{ .name = "plugin", .group = G_OPS, .type = T_OTHER,
	  .metavar = "FILE.so[:ARG]", .apply = apply_plugin, .describe = describe_plugin,
	  .help = "load hooks from a shared object; FILE ends at the first \".so\" "
		  "followed by ':' or the end, what follows the ':' is ARG "
		  "(default none)" },
	{ .name = "access-log", .group = G_OPS, .type = T_OTHER, .metavar = "PATH",
	  FIELD(access_log), .apply = apply_access_log, .describe = describe_string,
	  .help = "one line per client request, - for stderr (default off)" },
	{ .name = "drain-timeout", .group = G_OPS, .type = T_SECONDS, .flags = OPT_ZERO,
	  .metavar = "SEC", FIELD(drain_timeout),
	  .help = "on SIGTERM or SIGINT, how long in-flight work may finish, 0 to "
		  "86400 (default 10)" },
	{ .name = "debug", .shortname = 'd', .group = G_OPS, .type = T_OTHER, .flags = OPT_NOARG,
	  .apply = apply_debug, .describe = describe_debug,
	  .help = "log at debug level on stderr (default: info)" },
	{ .name = "quiet", .shortname = 'q', .group = G_OPS, .type = T_OTHER, .flags = OPT_NOARG,
	  .apply = apply_quiet, .describe = describe_quiet,
	  .help = "log only warnings and errors on stderr (default: info)" },
	{ .name = "config", .group = G_OPS, .type = T_ACTION, .flags = OPT_CLI, .metavar = "FILE",
	  .help = "read options from FILE (see below)" },
	{ .name = "check", .group = G_OPS, .type = T_SWITCH, .flags = OPT_CLI | OPT_NOARG,
	  FIELD(check),
	  .help = "validate the configuration, print it resolved on stdout in --config "
		  "syntax and exit: 0 when valid, 2 when not" },
	{ .name = "help", .shortname = 'h', .group = G_OPS, .type = T_ACTION,
	  .flags = OPT_CLI | OPT_NOARG, .help = "print this help on stdout and exit" },
	{ .name = "version", .shortname = 'V', .group = G_OPS, .type = T_ACTION,
	  .flags = OPT_CLI | OPT_NOARG, .help = "print the version on stdout and exit" },
};

_Static_assert(ARRAY_SIZE(opts) <= MAX_OPTS, "parser.given[] is too small");

static const struct opt *opt_by_name(const char *name, size_t n)
{
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
		if (strlen(opts[i].name) == n && !memcmp(opts[i].name, name, n))
			return &opts[i];
	return NULL;
}

static const struct opt *opt_by_short(char c)
{
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
		if (opts[i].shortname && opts[i].shortname == c)
			return &opts[i];
	return NULL;
}

static const struct opt *opt_named(const char *name)
{
	return opt_by_name(name, strlen(name));
}

static bool takes_value(const struct opt *o)
{
	return !(o->flags & OPT_NOARG);
}

static bool is_switch(const struct opt *o)
{
	return !takes_value(o) && o->type != T_ACTION;
}

/* ---- applying one argument ------------------------------------------------ */

static int apply_number(struct parser *p, const struct arg *a)
{
	const struct opt *o = a->opt;
	void *field = field_of(p->cfg, o);
	const char *v = a->value;
	uint64_t u;
	double d;

	switch (o->type) {
	case T_UINT:
	case T_POW2:
		if (!parse_uint(v, strlen(v), &u) || u < o->umin || u > o->umax)
			return fail(p, a, "expected an integer from %llu to %llu, got \"%s\"",
				    (unsigned long long)o->umin, (unsigned long long)o->umax, v);
		store_uint(field, o->size, o->type == T_POW2 ? round_pow2(u) : u);
		return 0;
	case T_SIZE:
		if (!parse_size(v, &u) || u < o->umin || u > o->umax) {
			char lo[32], hi[32];
			fmt_size(lo, sizeof lo, o->umin);
			fmt_size(hi, sizeof hi, o->umax);
			return fail(p, a, "expected a size from %s to %s (a byte count, or with a "
				    "k, M or G suffix), got \"%s\"", o->umin ? lo : "0", hi, v);
		}
		store_uint(field, o->size, u);
		return 0;
	case T_SECONDS:
		if (!parse_seconds(v, &d) || !seconds_ok(d, o->flags & OPT_ZERO))
			return fail(p, a, "%s, got \"%s\"", seconds_want(o->flags & OPT_ZERO), v);
		*(double *)field = d;
		return 0;
	case T_PERCENT:
		if (!parse_percent(v, &d))
			return fail(p, a, PERCENT_WANT ", got \"%s\"", v);
		*(double *)field = d;
		return 0;
	case T_NUMBER:
		if (!parse_decimal(v, strlen(v), &d) || d < o->dmin || d > o->dmax) {
			char lo[80], hi[80];
			fmt_decimal(lo, sizeof lo, o->dmin);
			if (isinf(o->dmax))
				return fail(p, a, "expected a number of at least %s, got \"%s\"", lo, v);
			fmt_decimal(hi, sizeof hi, o->dmax);
			return fail(p, a, "expected a number from %s to %s, got \"%s\"", lo, hi, v);
		}
		*(double *)field = d;
		return 0;
	default:
		return fail(p, a, "internal error: option type %d", o->type);
	}
}

static void forget_file_values(struct parser *p, const struct opt *o)
{
	if (o->type == T_LIST)
		list_clear(field_of(p->cfg, o));
	else if (o->forget)
		o->forget(p);
}

static int apply_arg(struct parser *p, const struct arg *a)
{
	const struct opt *o = a->opt;
	unsigned i = (unsigned)(o - opts);

	/* The command line's first word on a repeatable option drops the file's. */
	if (!a->file && (o->flags & OPT_REPEAT) && !(p->given[i] & GIVEN_CLI))
		forget_file_values(p, o);
	p->given[i] |= a->file ? GIVEN_FILE : GIVEN_CLI;

	switch (o->type) {
	case T_SWITCH:
		*(bool *)field_of(p->cfg, o) = a->on;
		return 0;
	case T_LIST:
		if (o->check(p, a))
			return -1;
		return list_push(p, field_of(p->cfg, o), a->value);
	case T_OTHER:
		return o->apply(p, a);
	case T_ACTION:
		return 0;
	default:
		return apply_number(p, a);
	}
}

/* ---- scanning the command line ------------------------------------------- */

static int switch_value(struct parser *p, struct arg *a)
{
	if (!a->value || !strcmp(a->value, "true"))
		a->on = true;
	else if (!strcmp(a->value, "false"))
		a->on = false;
	else
		return fail(p, a, "expected true or false, got \"%s\"", a->value);
	return 0;
}

/* A following word that looks like a flag is not taken as a value, so
 * `--listen --threads 2` says --listen needs one; "-" and "-1" are values. */
static bool looks_like_flag(const char *s)
{
	return s[0] == '-' && (s[1] == '-' || is_alpha(s[1]));
}

enum { SCAN_OK = 0, SCAN_ERROR = -1, SCAN_EXIT = 1 };

/* `flag` is taken over (freed here on failure). */
static int scan_one(struct parser *p, const struct opt *o, char *flag, const char *value, FILE *out)
{
	if (!flag)
		return SCAN_ERROR;
	if (o->type == T_ACTION) {
		int rc = SCAN_OK;
		if (value && !takes_value(o)) {
			struct arg tmp = { .flag = flag };
			rc = fail(p, &tmp, "takes no value");
		} else if (!strcmp(o->name, "help")) {
			config_usage(out);
			rc = SCAN_EXIT;
		} else if (!strcmp(o->name, "version")) {
			fprintf(out, "kage %s\n", KAGE_VERSION);
			rc = SCAN_EXIT;
		} else if (p->config_path) {
			struct arg tmp = { .flag = flag };
			rc = fail(p, &tmp, "given twice");
		} else {
			p->config_path = value;
			p->config_flag = flag;
			return SCAN_OK;
		}
		free(flag);
		return rc;
	}

	struct arg *a = arglist_add(p, &p->cli);
	if (!a) {
		free(flag);
		return SCAN_ERROR;
	}
	a->opt = o;
	a->flag = flag;
	if (value && !(a->value = dup_str(p, value)))
		return SCAN_ERROR;
	if (is_switch(o))
		return switch_value(p, a);
	return SCAN_OK;
}

static int scan_long(struct parser *p, int argc, char *const argv[], int *i, FILE *out)
{
	const char *s = argv[*i];
	const char *name = s + 2;
	const char *eq = strchr(name, '=');
	size_t len = eq ? (size_t)(eq - name) : strlen(name);
	const struct opt *o = opt_by_name(name, len);
	const char *value = eq ? eq + 1 : NULL;

	if (!o)
		return fail(p, NULL, "unknown option \"--%.*s\" (see --help)", (int)len, name);
	if (takes_value(o) && !value) {
		if (*i + 1 >= argc || looks_like_flag(argv[*i + 1]))
			return fail_at(p, NULL, 0, s, "needs a value");
		value = argv[++*i];
	}
	return scan_one(p, o, dup_span(p, s, len + 2), value, out);
}

/* -t4, -t 4, and bundles of switches like -dq. */
static int scan_short(struct parser *p, int argc, char *const argv[], int *i, FILE *out)
{
	for (const char *c = argv[*i] + 1; *c; c++) {
		const struct opt *o = opt_by_short(*c);
		char flag[3] = { '-', *c, '\0' };
		const char *value = NULL;
		int rc;

		if (!o)
			return fail(p, NULL, "unknown option \"%s\" (see --help)", flag);
		if (takes_value(o)) {
			if (c[1])
				value = c + 1;
			else if (*i + 1 < argc && !looks_like_flag(argv[*i + 1]))
				value = argv[++*i];
			else
				return fail_at(p, NULL, 0, flag, "needs a value");
		}
		rc = scan_one(p, o, dup_str(p, flag), value, out);
		if (rc || value)
			return rc;
	}
	return SCAN_OK;
}

static int scan_cli(struct parser *p, int argc, char *const argv[], FILE *out)
{
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];
		int rc;

		if (!strcmp(s, "--")) {
			if (i + 1 < argc)
				return fail(p, NULL, "unexpected argument \"%s\" (see --help)", argv[i + 1]);
			break;
		}
		if (s[0] != '-' || s[1] == '\0')
			return fail(p, NULL, "unexpected argument \"%s\" (see --help)", s);
		rc = s[1] == '-' ? scan_long(p, argc, argv, &i, out) : scan_short(p, argc, argv, &i, out);
		if (rc)
			return rc;
	}
	return SCAN_OK;
}

/* ---- reading the config file ------------------------------------------------ */

static char *trim(char *s)
{
	char *e;

	while (is_space(*s))
		s++;
	e = s + strlen(s);
	while (e > s && is_space(e[-1]))
		*--e = '\0';
	return s;
}

static int read_line(struct parser *p, const char *path, unsigned lineno, char *line)
{
	char *s = trim(line);
	char *eq, *key, *value;
	const struct opt *o;

	if (!*s || *s == '#')
		return 0;
	if (!(eq = strchr(s, '=')))
		return fail_at(p, path, lineno, NULL, "expected \"key = value\", got \"%s\"", s);
	*eq = '\0';
	key = trim(s);
	value = trim(eq + 1);
	if (!*key)
		return fail_at(p, path, lineno, NULL, "expected \"key = value\", got \"= %s\"", value);

	o = opt_named(key);
	if (!o && key[0] == '-')
		return fail_at(p, path, lineno, NULL,
			       "unknown key \"%s\" (keys are long option names without \"--\")", key);
	if (!o)
		return fail_at(p, path, lineno, NULL, "unknown key \"%s\"", key);
	if (o->flags & OPT_CLI)
		return fail_at(p, path, lineno, key, "only on the command line");

	struct arg *a = arglist_add(p, &p->file);
	if (!a)
		return -1;
	a->opt = o;
	a->file = path;
	a->line = lineno;
	if (!(a->flag = dup_str(p, key)) || !(a->value = dup_str(p, value)))
		return -1;
	if (is_switch(o)) {
		if (!strcmp(value, "true"))
			a->on = true;
		else if (strcmp(value, "false"))
			return fail(p, a, "expected true or false, got \"%s\"", value);
	}
	return 0;
}

static int read_config_file(struct parser *p)
{
	const char *path = p->config_path;
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	unsigned lineno = 0;
	int rc = 0;

	if (!f)
		return fail_at(p, NULL, 0, p->config_flag, "cannot open \"%s\": %s", path, strerror(errno));
	while (!rc && (len = getline(&line, &cap, f)) != -1) {
		lineno++;
		if (memchr(line, '\0', (size_t)len))
			rc = fail_at(p, path, lineno, NULL, "NUL byte in line");
		else
			rc = read_line(p, path, lineno, line);
	}
	if (!rc && ferror(f))
		rc = fail_at(p, NULL, 0, p->config_flag, "cannot read \"%s\": %s", path, strerror(errno));
	free(line);
	fclose(f);
	return rc;
}

/* ---- once everything is read ------------------------------------------------- */

static bool given(const struct parser *p, const char *name)
{
	const struct opt *o = opt_named(name);
	return o && p->given[o - opts];
}

static int finish_backends(struct parser *p)
{
	struct kage_config *c = p->cfg;

	if (!p->nmaster_file && !p->nmaster_cli)
		return fail_at(p, NULL, 0, "--master", "required");

	c->backends[0] = p->master.b;
	c->backends[0].master = true;
	c->backends[0].sample = 100;
	c->backends[0].timeout = c->backend_timeout;
	c->backends[0].body_max = 0;
	c->nbackends = 1;

	for (unsigned i = 0; i < p->nshadows; i++) {
		const struct backend_spec *s = &p->shadows[i];
		struct cfg_backend *b = &c->backends[c->nbackends];

		if (config_backend_index(c, s->b.name) >= 0)
			return fail(p, s->from, "a backend name given twice: \"%s\"", s->b.name);
		*b = s->b;
		b->master = false;
		b->sample = s->has_sample ? s->b.sample : c->shadow_sample;
		b->timeout = s->has_timeout ? s->b.timeout : c->shadow_timeout;
		b->body_max = s->has_body_max ? s->b.body_max : c->shadow_body_max;
		c->nbackends++;
	}
	return 0;
}

static int finish_edits(struct parser *p)
{
	struct kage_config *c = p->cfg;

	if (!p->nedits)
		return 0;
	for (unsigned i = 0; i < p->nedits; i++) {
		struct edit_spec *e = &p->edits[i];
		if (!strcmp(e->backend, "*")) {
			e->e.backend = -1;
		} else if ((e->e.backend = config_backend_index(c, e->backend)) < 0) {
			return fail(p, e->from, "no backend named \"%s\"", e->backend);
		}
	}
	if (!(c->edits = calloc(p->nedits, sizeof *c->edits)))
		return fail_oom(p);
	/* The names and values move into the config. */
	for (unsigned i = 0; i < p->nedits; i++) {
		c->edits[i] = p->edits[i].e;
		p->edits[i].e.name = p->edits[i].e.value = NULL;
	}
	c->nedits = p->nedits;
	return 0;
}

static int finish_reference(struct parser *p)
{
	struct kage_config *c = p->cfg;
	int i;

	if (!p->reference)
		return 0;
	i = config_backend_index(c, p->reference);
	if (i < 0)
		return fail(p, p->reference_from, "no shadow named \"%s\"", p->reference);
	if (i == 0)
		return fail(p, p->reference_from,
			    "\"%s\" is the master; the reference is a shadow running master's code",
			    p->reference);
	c->reference = i;
	return 0;
}

static int finish(struct parser *p)
{
	if (!given(p, "shadow-timeout"))
		p->cfg->shadow_timeout = p->cfg->backend_timeout;
	if (finish_backends(p) || finish_edits(p) || finish_reference(p))
		return -1;
	return 0;
}

static int set_defaults(struct parser *p)
{
	struct kage_config *c = p->cfg;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	memset(c, 0, sizeof *c);
	addr_default_listen(&c->listen);
	c->threads = cpus < 1 ? 1 : cpus > 1024 ? 1024 : (unsigned)cpus;
	c->ring_entries = 4096;
	c->buffers = 512;
	c->buffer_size = 65536;
	c->max_conns = 65536;
	c->client_timeout = 15;
	c->backend_timeout = 10;
	c->shadow_timeout = 10;
	c->drain_timeout = 10;
	c->shadow_sample = 100;
	c->sample_key = SAMPLE_RANDOM;
	c->shadow_max_inflight = 1024;
	c->shadow_body_max = MIB;
	c->shadow_memory = 64 * MIB;
	c->capture_max = MIB;
	c->reference = -1;
	c->noise_relative = 0.20;
	c->noise_absolute = 0.0003;
	c->log_level = LOG_INFO;
	if (!(c->session_header = dup_str(p, "X-Kage-Session")) ||
	    !(c->diff_log = dup_str(p, "-")) ||
	    list_push(p, &c->shadow_methods, "GET") || list_push(p, &c->shadow_methods, "HEAD"))
		return -1;
	return 0;
}

static void parser_free(struct parser *p)
{
	arglist_free(&p->cli);
	arglist_free(&p->file);
	free(p->config_flag);
	for (unsigned i = 0; i < p->nedits; i++)
		edit_free(&p->edits[i]);
	free(p->edits);
	free(p->reference);
}

enum config_result config_parse(struct kage_config *cfg, int argc, char *const argv[],
				FILE *out, char *err, size_t errlen)
{
	struct parser p = { .cfg = cfg, .err = err, .errlen = errlen };
	enum config_result result = CONFIG_ERROR;
	int rc;

	if (errlen)
		err[0] = '\0';
	if (set_defaults(&p))
		goto done;
	rc = scan_cli(&p, argc, argv, out);
	if (rc == SCAN_EXIT) {
		result = CONFIG_EXIT;
		goto done;
	}
	if (rc || (p.config_path && read_config_file(&p)))
		goto done;
	for (unsigned i = 0; i < p.file.n; i++)
		if (apply_arg(&p, &p.file.v[i]))
			goto done;
	for (unsigned i = 0; i < p.cli.n; i++)
		if (apply_arg(&p, &p.cli.v[i]))
			goto done;
	if (finish(&p))
		goto done;
	result = CONFIG_OK;
done:
	parser_free(&p);
	return result;
}

/* ---- describe, usage, free ------------------------------------------------------ */

void config_describe(const struct kage_config *cfg, FILE *out)
{
	fprintf(out, "# kage %s configuration, every setting resolved\n", KAGE_VERSION);
	for (unsigned g = 0; g < G_COUNT; g++) {
		fprintf(out, "\n# %s\n", group_titles[g]);
		for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
			const struct opt *o = &opts[i];
			const void *field = cfield_of(cfg, o);
			char buf[80];

			if (o->group != g || (o->flags & OPT_CLI))
				continue;
			switch (o->type) {
			case T_UINT:
			case T_POW2:
			case T_SIZE:
				fprintf(out, "%s = %llu\n", o->name,
					(unsigned long long)load_uint(field, o->size));
				break;
			case T_SECONDS:
			case T_NUMBER:
			case T_PERCENT:
				fmt_decimal(buf, sizeof buf, *(const double *)field);
				fprintf(out, "%s = %s\n", o->name, buf);
				break;
			case T_SWITCH:
				fprintf(out, "%s = %s\n", o->name, *(const bool *)field ? "true" : "false");
				break;
			case T_LIST: {
				const struct cfg_list *l = field;
				if (!l->n)
					fprintf(out, "# %s: none\n", o->name);
				for (unsigned j = 0; j < l->n; j++)
					put_line(out, o->name, l->v[j]);
				break;
			}
			case T_OTHER:
				o->describe(cfg, o, out);
				break;
			default:
				break;
			}
		}
	}
}

#define HELP_WIDTH	79
#define HELP_INDENT	30

/* Word-wrap `text`, the cursor being at HELP_INDENT already. */
static void usage_wrap(FILE *out, const char *text)
{
	unsigned col = HELP_INDENT;
	bool fresh = true;

	for (const char *s = text; *s;) {
		size_t n;

		while (*s == ' ')
			s++;
		n = strcspn(s, " ");
		if (!n)
			break;
		if (!fresh && col + 1 + n > HELP_WIDTH) {
			fprintf(out, "\n%*s", HELP_INDENT, "");
			col = HELP_INDENT;
			fresh = true;
		}
		if (!fresh) {
			fputc(' ', out);
			col++;
		}
		fwrite(s, 1, n, out);
		col += (unsigned)n;
		fresh = false;
		s += n;
	}
	fputc('\n', out);
}

static void usage_opt(FILE *out, const struct opt *o)
{
	char help[512];
	int n;

	if (o->shortname)
		n = fprintf(out, "  -%c, --%s", o->shortname, o->name);
	else
		n = fprintf(out, "      --%s", o->name);
	if (o->metavar)
		n += fprintf(out, " %s", o->metavar);
	if (n + 2 > HELP_INDENT)
		fprintf(out, "\n%*s", HELP_INDENT, "");
	else
		fprintf(out, "%*s", HELP_INDENT - n, "");
	snprintf(help, sizeof help, "%s", o->help);
	usage_wrap(out, help);
}

void config_usage(FILE *out)
{
	fprintf(out,
		"Usage: kage --master NAME=HOST:PORT [--shadow NAME=HOST:PORT]... [OPTIONS]\n"
		"\n"
		"kage is an HTTP/1.x shadow proxy: clients get the master's responses,\n"
		"untouched and undelayed, while copies of selected requests go to shadow\n"
		"backends and every difference between their responses is logged.\n");
	for (unsigned g = 0; g < G_COUNT; g++) {
		fprintf(out, "\n%s:\n", group_titles[g]);
		for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
			if (opts[i].group == g)
				usage_opt(out, &opts[i]);
		if (g == G_BACKENDS)
			fprintf(out,
				"  NAME is letters, digits, '_', '.' and '-', at most %d characters,\n"
				"  unique among all backends. HOST is a name, an IPv4 address or\n"
				"  [IPv6]; it is resolved at startup and its first address is used.\n",
				KAGE_NAME_MAX - 1);
	}
	fprintf(out,
		"\n"
		"Values:\n"
		"  SEC is seconds with optional decimals or a suffix: 10, 2.5, 500ms, 30s.\n"
		"  BYTES is a byte count, optionally with a binary suffix: 64k, 16KiB, 1M,\n"
		"  1MiB, 2G, 2GiB. Every flag also takes --flag=VALUE, which a value\n"
		"  starting with '-' needs. Switches take --flag=true or --flag=false.\n"
		"  An empty value turns off --pin-cpus, --admin, --plugin, --access-log and\n"
		"  --reference (to override a --config file).\n"
		"\n"
		"Config file (--config FILE):\n"
		"  One 'key = value' per line; keys are the long option names without\n"
		"  '--', switches take true or false, lines starting with '#' are\n"
		"  comments. The command line wins over the file, and a repeatable option\n"
		"  (shadow, shadow-path, set-header, remove-header, ignore-header,\n"
		"  ignore-json, redact-header) given on the command line replaces all of\n"
		"  the file's values for it. --check prints a configuration in this form.\n"
		"\n"
		"Exit status: 0 when done, 2 when the configuration is invalid (one line\n"
		"on stderr says why).\n");
}

void config_free(struct kage_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->pin_cpus);
	list_clear(&cfg->shadow_methods);
	list_clear(&cfg->shadow_paths);
	free(cfg->sample_key_name);
	for (unsigned i = 0; i < cfg->nedits; i++) {
		free(cfg->edits[i].name);
		free(cfg->edits[i].value);
	}
	free(cfg->edits);
	free(cfg->session_header);
	list_clear(&cfg->ignore_headers);
	list_clear(&cfg->ignore_json);
	list_clear(&cfg->redact_headers);
	free(cfg->diff_log);
	free(cfg->plugin_path);
	free(cfg->plugin_arg);
	free(cfg->access_log);
	memset(cfg, 0, sizeof *cfg);
	cfg->reference = -1;
}

int config_backend_index(const struct kage_config *cfg, const char *name)
{
	for (unsigned i = 0; i < cfg->nbackends; i++)
		if (!strcmp(cfg->backends[i].name, name))
			return (int)i;
	return -1;
}
