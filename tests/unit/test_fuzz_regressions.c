/*
 * Regressions found by the fuzzers (tests/fuzz/): each input replayed
 * through the code path the fuzz target drives, with the behaviour it
 * should have. Every case runs in a child process, so an out-of-bounds read
 * (made to fault with a guard page), a sanitizer abort or a crash is one
 * failed test, not the end of the run. The inputs are also in the fuzz
 * corpora (tests/fuzz/corpus/<target>/regress-*).
 */
#include <CUnit/Basic.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "diff.h"
#include "head.h"
#include "http.h"
#include "pool.h"

static struct bytepool pool;

/* --- running a case in a child ---------------------------------------------- */

static void run_isolated(const char *name, int (*fn)(void), int line)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		int rc = fn();
		fflush(NULL);
		_exit(rc);
	}
	int st = 0;
	bool ok = pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
	char msg[256];
	if (pid > 0 && WIFSIGNALED(st))
		snprintf(msg, sizeof msg, "%s: killed by signal %d", name, WTERMSIG(st));
	else
		snprintf(msg, sizeof msg, "%s: exit status %d", name, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	CU_assertImplementation(ok, (unsigned)line, msg, __FILE__, "", CU_FALSE);
}

#define ISOLATED(fn) run_isolated(#fn, fn, __LINE__)

#define EXPECT(cond)                                                              \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
			return 1;                                                 \
		}                                                                 \
	} while (0)

/* `len` bytes placed so that the byte after them is on an unmapped page. */
static char *at_page_end(const char *data, size_t len)
{
	long pg = sysconf(_SC_PAGESIZE);
	char *m = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || mprotect(m + pg, (size_t)pg, PROT_NONE) != 0)
		abort();
	char *p = m + pg - len;
	memcpy(p, data, len);
	return p;
}

/* Parse `in` whole; the first event, the parser left for inspection. */
static enum http_event parse_whole(struct http_parser *p, enum http_kind kind, uint8_t method,
				   const char *in)
{
	size_t used;
	http_parser_init(p, kind, &pool, NULL, NULL);
	if (kind == HTTP_KIND_RESPONSE)
		http_parser_expect(p, method);
	return http_parse(p, in, strlen(in), &used);
}

/* --- fuzz_request ------------------------------------------------------------- */

/*
 * fuzz_request crash: "GET / HTTP/1.2" alone in a receive buffer. llhttp
 * reports the version error at the end of the buffer and
 * version_error_status() (src/http.c) reads the byte after it. Split at
 * that point, the verdict must be the one the whole request gets: 505.
 */
static int version_error_at_buffer_end(void)
{
	const char *first = "GET / HTTP/1.2", *rest = "\r\nHost: a\r\n\r\n";
	char *buf = at_page_end(first, strlen(first));
	struct http_parser p;
	size_t used;
	http_parser_init(&p, HTTP_KIND_REQUEST, &pool, NULL, NULL);
	enum http_event e = http_parse(&p, buf, strlen(first), &used);
	if (e == HEV_MORE)
		e = http_parse(&p, at_page_end(rest, strlen(rest)), strlen(rest), &used);
	EXPECT(e == HEV_ERROR);
	EXPECT(p.error_status == 505);
	return 0;
}

static void test_version_error_at_buffer_end(void)
{
	ISOLATED(version_error_at_buffer_end);
}

/*
 * fuzz_request check: an empty header value ("X-E:" or "X-E: ") is taken
 * for obs-fold. llhttp 8.1.0 reports it as a zero-length value span at the
 * start of the next line, and is_fold() (src/http.c) sees '\n' before it.
 * RFC 9110 5.5 allows empty values; curl -H 'X-E;' sends one.
 */
static int empty_header_value_request(void)
{
	struct http_parser p;
	EXPECT(parse_whole(&p, HTTP_KIND_REQUEST, 0, "GET / HTTP/1.1\r\nHost: a\r\nX-E:\r\nX-F: 1\r\n\r\n") ==
	       HEV_HEAD);
	size_t len = 9;
	EXPECT(msg_header_named(&p.msg, "x-e", &len) && len == 0);
	http_parser_reset(&p);
	EXPECT(parse_whole(&p, HTTP_KIND_REQUEST, 0, "GET / HTTP/1.1\r\nHost: a\r\nX-E: \r\n\r\n") == HEV_HEAD);
	http_parser_reset(&p);
	EXPECT(parse_whole(&p, HTTP_KIND_REQUEST, 0, "GET / HTTP/1.1\r\nHost:\r\n\r\n") == HEV_HEAD);
	http_parser_reset(&p);
	return 0;
}

static int empty_header_value_response(void)
{
	struct http_parser p;
	EXPECT(parse_whole(&p, HTTP_KIND_RESPONSE, HTTP_GET,
			   "HTTP/1.1 200 OK\r\nX-E:\r\nContent-Length: 0\r\n\r\n") == HEV_HEAD);
	http_parser_reset(&p);
	return 0;
}

/* The head kage writes when the client's address is unknown has an empty
 * X-Forwarded-For: it must parse again (fuzz_request, client_addr ""). */
static int rewritten_head_empty_xff(void)
{
	struct http_parser p;
	EXPECT(parse_whole(&p, HTTP_KIND_REQUEST, 0, "GET / HTTP/1.1\r\nHost: a\r\n\r\n") == HEV_HEAD);
	struct head_request_opts o = { .client_addr = "", .client_addr_len = 0 };
	char buf[512];
	EXPECT(head_request_size(&p.msg, &o) <= sizeof buf);
	size_t n = head_request_write(&p.msg, &o, buf);
	buf[n] = '\0';
	struct http_parser q;
	EXPECT(parse_whole(&q, HTTP_KIND_REQUEST, 0, buf) == HEV_HEAD);
	http_parser_reset(&q);
	http_parser_reset(&p);
	return 0;
}

static void test_empty_header_value(void)
{
	ISOLATED(empty_header_value_request);
	ISOLATED(empty_header_value_response);
	ISOLATED(rewritten_head_empty_xff);
}

/*
 * test_smuggling te_trailing_tab: "Transfer-Encoding: chunked<HTAB>". kage's
 * own check trims the tab and accepts "chunked"; llhttp did not set
 * F_CHUNKED, so set_body_kind() makes the body BODY_NONE and the head
 * returns 1 (skip body), which also skips llhttp's "invalid
 * Transfer-Encoding" verdict. The chunked body is then parsed as the next
 * request: smuggling. Either refuse it (400) or read it as chunked.
 */
static int te_chunked_trailing_tab(void)
{
	const char *in[] = {
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked \t\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	};
	for (size_t i = 0; i < 2; i++) {
		struct http_parser p;
		enum http_event e = parse_whole(&p, HTTP_KIND_REQUEST, 0, in[i]);
		EXPECT(e == HEV_ERROR || (e == HEV_HEAD && p.msg.body == BODY_CHUNKED));
		if (e == HEV_ERROR)
			EXPECT(p.error_status == 400);
		http_parser_reset(&p);
	}
	/* The response side: chunked framing, not close-delimited. */
	struct http_parser p;
	enum http_event e = parse_whole(&p, HTTP_KIND_RESPONSE, HTTP_GET,
					"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n");
	EXPECT(e == HEV_ERROR || (e == HEV_HEAD && p.msg.body == BODY_CHUNKED));
	http_parser_reset(&p);
	return 0;
}

static void test_te_chunked_trailing_tab(void)
{
	ISOLATED(te_chunked_trailing_tab);
}

/*
 * test_smuggling te_folded_value / cl_folded_empty_first_line: an obs-fold
 * after an empty first line ("Transfer-Encoding:\r\n chunked"). llhttp
 * discards the fold's white space, so the value span starts after a space
 * and is_fold() misses it. SPEC section 3: 400.
 */
static int fold_after_empty_value(void)
{
	const char *in[] = {
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 5\r\n\r\nhello",
		"POST / HTTP/1.1\r\nHost: a\r\nX-A: \r\n\tb\r\n\r\n",
	};
	for (size_t i = 0; i < 3; i++) {
		struct http_parser p;
		EXPECT(parse_whole(&p, HTTP_KIND_REQUEST, 0, in[i]) == HEV_ERROR);
		EXPECT(p.error_status == 400);
		http_parser_reset(&p);
	}
	return 0;
}

static void test_fold_after_empty_value(void)
{
	ISOLATED(fold_after_empty_value);
}

/* test_smuggling bare_lf_*: SPEC section 3, bare LF line ends are 400. */
static int bare_lf_line_ends(void)
{
	const char *in[] = {
		"GET / HTTP/1.1\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\n",
	};
	for (size_t i = 0; i < 2; i++) {
		struct http_parser p;
		EXPECT(parse_whole(&p, HTTP_KIND_REQUEST, 0, in[i]) == HEV_ERROR);
		EXPECT(p.error_status == 400);
		http_parser_reset(&p);
	}
	return 0;
}

static void test_bare_lf_line_ends(void)
{
	ISOLATED(bare_lf_line_ends);
}

/*
 * fuzz_request / fuzz_response check: empty lines before a message count
 * towards the head limit but never fail it (no message has begun), so after
 * 64 KiB + 1 of them http_parse() feeds llhttp 0 bytes and returns HEV_MORE
 * having used nothing. client.c's process_input() and upstream.c's
 * parse_response() call it again on the same bytes, forever: one client,
 * or one shadow backend, wedges its shard at 100% CPU.
 */
static int empty_lines_flood(enum http_kind kind, const char *msg)
{
	size_t n = 64 * 1024 + 2, mlen = strlen(msg);
	char *b = malloc(n + mlen);
	if (!b)
		return 1;
	for (size_t i = 0; i < n; i++)
		b[i] = i % 2 ? '\n' : '\r';
	memcpy(b + n, msg, mlen);
	struct http_parser p;
	http_parser_init(&p, kind, &pool, NULL, NULL);
	if (kind == HTTP_KIND_RESPONSE)
		http_parser_expect(&p, HTTP_GET);
	size_t off = 0, used;
	enum http_event e = HEV_MORE;
	for (int calls = 0; calls < 16 && off < n + mlen; calls++) {
		e = http_parse(&p, b + off, n + mlen - off, &used);
		off += used;
		if (e != HEV_MORE)
			break;
		EXPECT(used > 0);
	}
	EXPECT(e == HEV_HEAD || e == HEV_ERROR);
	http_parser_reset(&p);
	free(b);
	return 0;
}

static int empty_lines_flood_request(void)
{
	return empty_lines_flood(HTTP_KIND_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
}

static int empty_lines_flood_response(void)
{
	return empty_lines_flood(HTTP_KIND_RESPONSE, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

static void test_empty_lines_flood(void)
{
	ISOLATED(empty_lines_flood_request);
	ISOLATED(empty_lines_flood_response);
}

/* --- fuzz_response ---------------------------------------------------------- */

/*
 * fuzz_response check: statuses below 100 ("099", "99", "0") are taken as
 * interim responses (status < 200) and forwarded as "HTTP/1.1 99 ..."; with
 * their Content-Length a client that does not take "99" for 1xx desyncs.
 * They are not HTTP status codes: a malformed response (502).
 */
static int status_below_100(void)
{
	const char *in[] = {
		"HTTP/1.1 099 Odd\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 99 Odd\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 000 Odd\r\nContent-Length: 0\r\n\r\n",
	};
	for (size_t i = 0; i < 3; i++) {
		struct http_parser p;
		EXPECT(parse_whole(&p, HTTP_KIND_RESPONSE, HTTP_GET, in[i]) == HEV_ERROR);
		EXPECT(p.error_status == 502);
		http_parser_reset(&p);
	}
	return 0;
}

static void test_status_below_100(void)
{
	ISOLATED(status_below_100);
}

/*
 * fuzz_response check: a close-delimited response with an empty body
 * ("HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n", then close). llhttp paused
 * at the head; no byte comes after it, so http_finish() calls llhttp_finish()
 * in the head-complete state: HPE_INVALID_EOF_STATE, HEV_ERROR. The client
 * gets a chunked head and a reset instead of an empty body.
 */
static int close_delimited_empty(void)
{
	const char *in[] = {
		"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: b\r\n\r\n",
	};
	for (size_t i = 0; i < 2; i++) {
		struct http_parser p;
		EXPECT(parse_whole(&p, HTTP_KIND_RESPONSE, HTTP_GET, in[i]) == HEV_HEAD);
		EXPECT(p.msg.body == BODY_EOF);
		EXPECT(http_finish(&p) == HEV_END);
		http_parser_reset(&p);
	}
	return 0;
}

static void test_close_delimited_empty(void)
{
	ISOLATED(close_delimited_empty);
}

/*
 * fuzz_response UBSan report: a response with an empty reason and no header
 * ("HTTP/1.1 204 \r\n\r\n") has no head store (msg.store NULL), and
 * head_response_write() memcpy()s 0 bytes from NULL + 0 (src/head.c put()).
 * Undefined behaviour; the ASan/UBSan build of kage aborts on it.
 */
static int empty_reason_no_headers(void)
{
	struct http_parser p;
	EXPECT(parse_whole(&p, HTTP_KIND_RESPONSE, HTTP_GET, "HTTP/1.1 204 \r\n\r\n") == HEV_HEAD);
	struct head_response_opts o = { 0 };
	char buf[256];
	EXPECT(head_response_size(&p.msg, &o) <= sizeof buf);
	size_t n = head_response_write(&p.msg, &o, buf);
	EXPECT(n == strlen("HTTP/1.1 204 \r\n\r\n") && memcmp(buf, "HTTP/1.1 204 \r\n\r\n", n) == 0);
	n = head_interim_write(&p.msg, buf);
	EXPECT(n > 0);
	http_parser_reset(&p);
	return 0;
}

static void test_empty_reason_no_headers(void)
{
	ISOLATED(empty_reason_no_headers);
}

/* --- fuzz_diff ---------------------------------------------------------------- */

/*
 * Found with the fuzz_diff seed json_nul_key: a member name holding \u0000
 * puts a NUL inside the item's `where` (a C string), so the pointer reads
 * "/a", another member, which is equal on both sides.
 */
static int json_pointer_nul_key(void)
{
	const char *m = "{\"a\\u0000b\":1,\"a\":1}", *s = "{\"a\\u0000b\":2,\"a\":1}";
	struct diff_header h = { "Content-Type", 12, "application/json", 16 };
	struct diff_response M = { .status = 200, .headers = &h, .nheaders = 1,
				   .body = (const uint8_t *)m, .body_len = strlen(m),
				   .body_total = strlen(m) };
	struct diff_response S = M;
	S.body = (const uint8_t *)s;
	S.body_len = S.body_total = strlen(s);
	struct diff_options o = { 0 };
	struct diff_result *r = diff_result_new();
	EXPECT(diff_compare(&o, &M, &S, r) == 1);
	const struct diff_item *it = diff_get(r, 0);
	EXPECT(it->where_type == WHERE_TEXT);
	/* the changed member, NUL and all, not "/a" (which did not change) */
	EXPECT(it->where_len == 4 && memcmp(it->where, "/a\0b", 4) == 0);
	diff_result_free(r);
	return 0;
}

static void test_json_pointer_nul_key(void)
{
	ISOLATED(json_pointer_nul_key);
}

/* --- fuzz_config --------------------------------------------------------------- */

/*
 * fuzz_config check: config_describe() wrote a value with trailing (or
 * leading) white space as it is; the --config reader trims values, so
 * `kage --check` output fed back with --config was another configuration.
 * The fix refuses such paths outright (a path that ends in a space is
 * almost always a quoting mistake); inner spaces still round-trip.
 */
static int describe_round_trip_spaces(void)
{
	char *bad[] = { "kage", "--master", "p=127.0.0.1:1", "--access-log", "/tmp/a log ", NULL };
	char *argv[] = { "kage", "--master", "p=127.0.0.1:1", "--access-log", "/tmp/a log",
			 "--diff-log", "/tmp/d d.jsonl", NULL };
	struct kage_config a, b;
	char err[256];
	FILE *null = fopen("/dev/null", "w");
	EXPECT(config_parse(&a, 5, bad, null, err, sizeof err) == CONFIG_ERROR);
	EXPECT(strstr(err, "space") != NULL);
	config_free(&a);
	if (config_parse(&a, 7, argv, null, err, sizeof err) != CONFIG_OK) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	char *d1 = NULL, *d2 = NULL;
	size_t l1, l2;
	FILE *f = open_memstream(&d1, &l1);
	config_describe(&a, f);
	fclose(f);
	char path[] = "/tmp/kage-regress-XXXXXX";
	int fd = mkstemp(path);
	EXPECT(fd >= 0 && write(fd, d1, l1) == (ssize_t)l1);
	close(fd);
	char *argv2[] = { "kage", "--config", path, NULL };
	enum config_result rc = config_parse(&b, 3, argv2, null, err, sizeof err);
	unlink(path);
	EXPECT(rc == CONFIG_OK);
	f = open_memstream(&d2, &l2);
	config_describe(&b, f);
	fclose(f);
	EXPECT(l1 == l2 && memcmp(d1, d2, l1) == 0);
	config_free(&a);
	config_free(&b);
	free(d1);
	free(d2);
	fclose(null);
	return 0;
}

/* fuzz_config: a value of only white space is accepted on the command line
 * (--diff-log ' '), described as "diff-log =  ", and read back as empty:
 * the description does not parse at all. */
static int describe_round_trip_blank(void)
{
	char *argv[] = { "kage", "--master", "p=127.0.0.1:1", "--diff-log", " ", NULL };
	struct kage_config a, b;
	char err[256];
	FILE *null = fopen("/dev/null", "w");
	enum config_result rc = config_parse(&a, 5, argv, null, err, sizeof err);
	if (rc != CONFIG_OK) {
		config_free(&a);
		return 0;	/* refusing a blank path is a fix too */
	}
	char *d = NULL;
	size_t l;
	FILE *f = open_memstream(&d, &l);
	config_describe(&a, f);
	fclose(f);
	char path[] = "/tmp/kage-regress-XXXXXX";
	int fd = mkstemp(path);
	EXPECT(fd >= 0 && write(fd, d, l) == (ssize_t)l);
	close(fd);
	char *argv2[] = { "kage", "--config", path, NULL };
	rc = config_parse(&b, 3, argv2, null, err, sizeof err);
	unlink(path);
	if (rc != CONFIG_OK)
		fprintf(stderr, "%s\n", err);
	EXPECT(rc == CONFIG_OK);
	config_free(&a);
	config_free(&b);
	free(d);
	fclose(null);
	return 0;
}

static void test_describe_round_trip_spaces(void)
{
	ISOLATED(describe_round_trip_spaces);
	ISOLATED(describe_round_trip_blank);
}

int main(void)
{
	bytepool_init(&pool, 16 << 20);
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	CU_pSuite s = CU_add_suite("fuzz regressions", NULL, NULL);
	if (!s || !CU_add_test(s, "version error at a buffer's end", test_version_error_at_buffer_end) ||
	    !CU_add_test(s, "empty header values", test_empty_header_value) ||
	    !CU_add_test(s, "chunked<HTAB> is chunked or refused", test_te_chunked_trailing_tab) ||
	    !CU_add_test(s, "obs-fold after an empty value", test_fold_after_empty_value) ||
	    !CU_add_test(s, "bare LF line ends", test_bare_lf_line_ends) ||
	    !CU_add_test(s, "64 KiB of empty lines", test_empty_lines_flood) ||
	    !CU_add_test(s, "response status below 100", test_status_below_100) ||
	    !CU_add_test(s, "empty close-delimited body", test_close_delimited_empty) ||
	    !CU_add_test(s, "empty reason, no header", test_empty_reason_no_headers) ||
	    !CU_add_test(s, "JSON pointer of a key with NUL", test_json_pointer_nul_key) ||
	    !CU_add_test(s, "describe round trip with spaces", test_describe_round_trip_spaces)) {
		CU_cleanup_registry();
		return 1;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	unsigned failed = CU_get_number_of_failures();
	CU_cleanup_registry();
	bytepool_destroy(&pool);
	return failed != 0;
}
