/*
 * test_endpoint: request grouping (src/endpoint.h).
 */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <string.h>

#include "endpoint.h"

static const char *ep(const char *method, const char *target)
{
	static char out[512];
	size_t n = endpoint_of(method, strlen(method), target, strlen(target), out, sizeof(out));
	CU_ASSERT_EQUAL(n, strlen(out));
	return out;
}

static void test_table(void)
{
	static const struct {
		const char *method, *target, *want;
	} cases[] = {
		{ "GET", "/users/7?full=1", "GET /users/:id" },
		{ "GET", "/", "GET /" },
		{ "GET", "/users", "GET /users" },
		{ "GET", "/users/", "GET /users/" },
		{ "GET", "//a//7", "GET //a//:id" },
		{ "POST", "/users/0/posts/123456789", "POST /users/:id/posts/:id" },
		{ "GET", "/v1/users/42/avatar.png", "GET /v1/users/:id/avatar.png" },
		{ "GET", "/v2/x", "GET /v2/x" },		/* v2 is not a number */
		{ "GET", "/items/-1", "GET /items/-1" },
		{ "GET", "/items/1.5", "GET /items/1.5" },
		{ "GET", "/items/7a", "GET /items/7a" },
		/* UUIDs, any case */
		{ "GET", "/o/550e8400-e29b-41d4-a716-446655440000", "GET /o/:id" },
		{ "GET", "/o/550E8400-E29B-41D4-A716-446655440000/x", "GET /o/:id/x" },
		{ "GET", "/o/550e8400-e29b-41d4-a716-44665544000", "GET /o/550e8400-e29b-41d4-a716-44665544000" },
		{ "GET", "/o/550e8400e29b-41d4-a716-446655440000-", "GET /o/550e8400e29b-41d4-a716-446655440000-" },
		{ "GET", "/o/550e8400-e29b-41d4-a716-44665544000g", "GET /o/550e8400-e29b-41d4-a716-44665544000g" },
		/* hex ids of 16 or more digits */
		{ "GET", "/c/0123456789abcdef", "GET /c/:id" },
		{ "GET", "/c/0123456789ABCDEF0", "GET /c/:id" },
		{ "GET", "/c/0123456789abcde", "GET /c/0123456789abcde" },	/* 15 */
		{ "GET", "/c/deadbeef", "GET /c/deadbeef" },
		{ "GET", "/c/5f1c0a9e2b7d4c31ff", "GET /c/:id" },
		{ "GET", "/c/0123456789abcdeg", "GET /c/0123456789abcdeg" },
		/* query and fragment dropped */
		{ "GET", "/a?b=1/2", "GET /a" },
		{ "GET", "/a#frag/7", "GET /a" },
		{ "GET", "/a/9?", "GET /a/:id" },
		{ "GET", "/?q", "GET /" },
		/* absolute-form keeps only the path */
		{ "GET", "http://h:1/p?q", "GET /p" },
		{ "GET", "http://h:1", "GET /" },
		{ "GET", "http://h?x=1", "GET /" },
		{ "GET", "https://example.com/users/12", "GET /users/:id" },
		/* percent-encoding left as is */
		{ "GET", "/files/%31%32", "GET /files/%31%32" },
		{ "GET", "/a%2F7/8", "GET /a%2F7/:id" },
		/* other forms */
		{ "OPTIONS", "*", "OPTIONS *" },
		{ "CONNECT", "example.com:443", "CONNECT example.com:443" },
		{ "GET", "", "GET /" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = ep(cases[i].method, cases[i].target);
		CU_ASSERT_STRING_EQUAL(got, cases[i].want);
		if (strcmp(got, cases[i].want) != 0)
			fprintf(stderr, "%s %s -> %s (want %s)\n", cases[i].method, cases[i].target, got,
				cases[i].want);
	}
}

static void test_cut(void)
{
	char out[16];
	const char *t = "/users/7/posts/8";
	/* "GET /users/:id" is 14 bytes: fits in 16 with the NUL; the next
	 * segment does not, so the cut is at a segment boundary. */
	size_t n = endpoint_of("GET", 3, t, strlen(t), out, sizeof(out));
	CU_ASSERT_EQUAL(n, 14);
	CU_ASSERT_STRING_EQUAL(out, "GET /users/:id");
	n = endpoint_of("GET", 3, t, strlen(t), out, 11);
	CU_ASSERT_STRING_EQUAL(out, "GET /users");
	CU_ASSERT_EQUAL(n, 10);
	n = endpoint_of("GET", 3, t, strlen(t), out, 6);
	CU_ASSERT_STRING_EQUAL(out, "GET ");
	n = endpoint_of("DELETE", 6, t, strlen(t), out, 4);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_STRING_EQUAL(out, "");
	CU_ASSERT_EQUAL(endpoint_of("GET", 3, t, strlen(t), out, 0), 0);
}

static void test_not_nul_terminated(void)
{
	/* Spans of a larger buffer: nothing past the lengths is read. */
	const char buf[] = "GETX/users/77?q";
	char out[64];
	endpoint_of(buf, 3, buf + 4, 9, out, sizeof(out));
	CU_ASSERT_STRING_EQUAL(out, "GET /users/:id");
	endpoint_of(buf, 3, buf + 4, 8, out, sizeof(out));
	CU_ASSERT_STRING_EQUAL(out, "GET /users/:id");
	endpoint_of(buf, 3, buf + 4, 6, out, sizeof(out));
	CU_ASSERT_STRING_EQUAL(out, "GET /users");
}

int main(void)
{
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	CU_pSuite suite = CU_add_suite("endpoint", NULL, NULL);
	if (!suite || !CU_add_test(suite, "templating table", test_table) ||
	    !CU_add_test(suite, "cut at segment boundary", test_cut) ||
	    !CU_add_test(suite, "spans, not strings", test_not_nul_terminated))
		goto fail;
	CU_basic_set_mode(CU_BRM_VERBOSE);
	if (CU_basic_run_tests() != CUE_SUCCESS)
		goto fail;
	unsigned failures = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures != 0;
fail:
	fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
	CU_cleanup_registry();
	return 2;
}
