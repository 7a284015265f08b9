/*
 * test_diff: the comparison engine (src/diff.h).
 */
#include <CUnit/Basic.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "diff.h"

static struct diff_result *R;

/* ------------------------------------------------------------------ helpers */

#define MAXH 16

struct resp {
	struct diff_response r;
	struct diff_header h[MAXH];
};

static void resp_init(struct resp *x, int status, const void *body, size_t len)
{
	memset(x, 0, sizeof(*x));
	x->r.status = status;
	x->r.headers = x->h;
	x->r.body = body;
	x->r.body_len = len;
	x->r.body_total = len;
	x->r.body_crc = (uint32_t)crc32(0, body, (uInt)len);
}

static void hdr(struct resp *x, const char *name, const char *value)
{
	struct diff_header *h = &x->h[x->r.nheaders++];
	h->name = name;
	h->name_len = strlen(name);
	h->value = value;
	h->value_len = strlen(value);
}

static void text_resp(struct resp *x, const char *body)
{
	resp_init(x, 200, body, strlen(body));
	hdr(x, "Content-Type", "text/html; charset=utf-8");
}

static void json_resp(struct resp *x, const char *body)
{
	resp_init(x, 200, body, strlen(body));
	hdr(x, "Content-Type", "application/json");
}

static size_t run(const struct diff_options *o, const struct resp *m, const struct resp *s)
{
	diff_result_reset(R);
	return diff_compare(o, &m->r, &s->r, R);
}

static size_t json_diff_opt(const struct diff_options *o, const char *a, const char *b)
{
	struct resp m, s;
	json_resp(&m, a);
	json_resp(&s, b);
	return run(o, &m, &s);
}

static size_t json_diff(const char *a, const char *b)
{
	return json_diff_opt(NULL, a, b);
}

static size_t text_diff(const char *a, const char *b)
{
	struct resp m, s;
	text_resp(&m, a);
	text_resp(&s, b);
	return run(NULL, &m, &s);
}

static const struct diff_item *item(size_t i)
{
	return diff_get(R, i);
}

static const struct diff_item *find(const char *where)
{
	for (size_t i = 0; i < diff_count(R); i++) {
		const struct diff_item *it = diff_get(R, i);
		if (it->where_type == WHERE_TEXT && strcmp(it->where, where) == 0)
			return it;
	}
	return NULL;
}

static bool text_is(const char *p, size_t n, const char *want)
{
	if (!want)
		return p == NULL;
	return p && n == strlen(want) && memcmp(p, want, n) == 0;
}

static bool contains(const char *p, size_t n, const char *needle)
{
	return p && memmem(p, n, needle, strlen(needle)) != NULL;
}

/* Every JSON value an item holds must be JSON text (jansson agrees). */
static bool json_texts_valid(void)
{
	for (size_t i = 0; i < diff_count(R); i++) {
		const struct diff_item *it = diff_get(R, i);
		const char *v[2] = { it->master, it->shadow };
		size_t l[2] = { it->master_len, it->shadow_len };
		if (it->kind != DIFF_BODY || it->where_type != WHERE_TEXT)
			continue;
		for (int k = 0; k < 2; k++) {
			if (!v[k])
				continue;
			json_error_t e;
			json_t *j = json_loadb(v[k], l[k], JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
			if (!j)
				return false;
			json_decref(j);
		}
	}
	return true;
}

static char *gzip_of(const char *s, size_t n, int wbits, size_t *outlen)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	CU_ASSERT_FATAL(deflateInit2(&z, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
	size_t cap = deflateBound(&z, n) + 16;
	char *out = malloc(cap);
	z.next_in = (Bytef *)(uintptr_t)s;
	z.avail_in = (uInt)n;
	z.next_out = (Bytef *)out;
	z.avail_out = (uInt)cap;
	CU_ASSERT_FATAL(deflate(&z, Z_FINISH) == Z_STREAM_END);
	*outlen = z.total_out;
	deflateEnd(&z);
	return out;
}

/* -------------------------------------------------------------- JSON basics */

static void test_json_whitespace(void)
{
	CU_ASSERT_EQUAL(json_diff("{\"a\":1,\"b\":[1,2,{\"c\":null}]}",
				  "{\n  \"a\" : 1,\n\t\"b\": [ 1 , 2, { \"c\" : null } ]\r\n}\n"), 0);
	CU_ASSERT_EQUAL(json_diff("  true ", "true"), 0);
	CU_ASSERT_EQUAL(json_diff("\xef\xbb\xbf{}", "{ }"), 0);	/* BOM */
}

static void test_json_key_order(void)
{
	CU_ASSERT_EQUAL(json_diff("{\"a\":1,\"b\":2,\"c\":{\"x\":1,\"y\":2}}",
				  "{\"c\":{\"y\":2,\"x\":1},\"b\":2,\"a\":1}"), 0);
	/* Duplicate keys: the last one wins, as in JavaScript. */
	CU_ASSERT_EQUAL(json_diff("{\"a\":1,\"a\":2}", "{\"a\":2}"), 0);
	/* Many keys (the merge sort path), reordered. */
	char a[4096] = "{", b[4096] = "{";
	for (int i = 0; i < 60; i++) {
		char m[32];
		snprintf(m, sizeof(m), "%s\"k%02d\":%d", i ? "," : "", i, i);
		strcat(a, m);
		snprintf(m, sizeof(m), "%s\"k%02d\":%d", i ? "," : "", 59 - i, 59 - i);
		strcat(b, m);
	}
	strcat(a, "}");
	strcat(b, "}");
	CU_ASSERT_EQUAL(json_diff(a, b), 0);
}

static void test_json_value_change(void)
{
	CU_ASSERT_EQUAL_FATAL(json_diff("{\"user\":{\"name\":\"Ann\",\"age\":3}}",
					"{\"user\":{\"age\":3,\"name\":\"Anne\"}}"), 1);
	const struct diff_item *it = item(0);
	CU_ASSERT_EQUAL(it->kind, DIFF_BODY);
	CU_ASSERT_EQUAL(it->change, CHANGE_VALUE);
	CU_ASSERT_EQUAL(it->where_type, WHERE_TEXT);
	CU_ASSERT_STRING_EQUAL(it->where, "/user/name");
	CU_ASSERT(text_is(it->master, it->master_len, "\"Ann\""));
	CU_ASSERT(text_is(it->shadow, it->shadow_len, "\"Anne\""));
	CU_ASSERT_FALSE(it->noise);
	CU_ASSERT_FALSE(diff_matches(R));
	/* true vs false is a value change, not a type change */
	CU_ASSERT_EQUAL_FATAL(json_diff("[true]", "[false]"), 1);
	CU_ASSERT_EQUAL(item(0)->change, CHANGE_VALUE);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "/0");
}

static void test_json_nested_arrays(void)
{
	CU_ASSERT_EQUAL_FATAL(json_diff("{\"m\":[[1,2],[3,4]]}", "{\"m\":[[1,2],[3,5]]}"), 1);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "/m/1/1");
	CU_ASSERT(text_is(item(0)->master, item(0)->master_len, "4"));
	CU_ASSERT(text_is(item(0)->shadow, item(0)->shadow_len, "5"));
	char place[64];
	diff_place(item(0), place, sizeof(place));
	CU_ASSERT_STRING_EQUAL(place, "/m/*/*");
	CU_ASSERT_EQUAL(json_diff("[[[]]]", "[[[]]]"), 0);
	CU_ASSERT_EQUAL_FATAL(json_diff("[[[1]]]", "[[[1,2]]]"), 1);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "/0/0/1");
	CU_ASSERT_EQUAL(item(0)->change, CHANGE_ADDED);
}

static void test_json_type_change(void)
{
	CU_ASSERT_EQUAL_FATAL(json_diff("{\"a\":1}", "{\"a\":\"1\"}"), 1);
	CU_ASSERT_EQUAL(item(0)->change, CHANGE_TYPE);
	CU_ASSERT(text_is(item(0)->master, item(0)->master_len, "1"));
	CU_ASSERT(text_is(item(0)->shadow, item(0)->shadow_len, "\"1\""));
	/* Compound values as compact JSON with sorted keys. */
	CU_ASSERT_EQUAL_FATAL(json_diff("{\"a\":{ \"y\" : 1, \"x\" : [2, \"s\"] }}", "{\"a\":[1]}"), 1);
	CU_ASSERT_EQUAL(item(0)->change, CHANGE_TYPE);
	CU_ASSERT(text_is(item(0)->master, item(0)->master_len, "{\"x\":[2,\"s\"],\"y\":1}"));
	CU_ASSERT(text_is(item(0)->shadow, item(0)->shadow_len, "[1]"));
	/* null vs value, and a root change: the pointer is "" */
	CU_ASSERT_EQUAL_FATAL(json_diff("{\"a\":null}", "{\"a\":0}"), 1);
	CU_ASSERT_EQUAL(item(0)->change, CHANGE_TYPE);
	CU_ASSERT(text_is(item(0)->master, item(0)->master_len, "null"));
	CU_ASSERT_EQUAL_FATAL(json_diff("[]", "{}"), 1);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "");
	CU_ASSERT_EQUAL(item(0)->change, CHANGE_TYPE);
	CU_ASSERT(json_texts_valid());
}

static void test_json_added_removed(void)
{
	CU_ASSERT_EQUAL_FATAL(json_diff("{\"a\":1}", "{\"a\":1,\"b\":null}"), 1);
	const struct diff_item *it = item(0);
	CU_ASSERT_EQUAL(it->change, CHANGE_ADDED);
	CU_ASSERT_STRING_EQUAL(it->where, "/b");
	CU_ASSERT_PTR_NULL(it->master);		/* absent */
	CU_ASSERT(text_is(it->shadow, it->shadow_len, "null"));	/* a present null */

	CU_ASSERT_EQUAL_FATAL(json_diff("{\"a\":1,\"b\":{\"c\":[1]}}", "{\"a\":1}"), 1);
	it = item(0);
	CU_ASSERT_EQUAL(it->change, CHANGE_REMOVED);
	CU_ASSERT_STRING_EQUAL(it->where, "/b");
	CU_ASSERT(text_is(it->master, it->master_len, "{\"c\":[1]}"));
	CU_ASSERT_PTR_NULL(it->shadow);

	CU_ASSERT_EQUAL_FATAL(json_diff("[1,2]", "[1,2,3]"), 1);
	CU_ASSERT_EQUAL(item(0)->change, CHANGE_ADDED);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "/2");
	CU_ASSERT_EQUAL_FATAL(json_diff("[1,2,3]", "[1,2]"), 1);
	CU_ASSERT_EQUAL(item(0)->change, CHANGE_REMOVED);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "/2");
	CU_ASSERT(text_is(item(0)->master, item(0)->master_len, "3"));

	/* Items come out in key order, whatever the documents' order. */
	CU_ASSERT_EQUAL_FATAL(json_diff("{\"z\":1,\"b\":1}", "{\"a\":1,\"y\":1}"), 4);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "/a");
	CU_ASSERT_STRING_EQUAL(item(1)->where, "/b");
	CU_ASSERT_STRING_EQUAL(item(2)->where, "/y");
	CU_ASSERT_STRING_EQUAL(item(3)->where, "/z");
}

static void test_json_array_alignment(void)
{
	/* One element inserted at the front: one item, not one per index. */
	CU_ASSERT_EQUAL_FATAL(json_diff("[1,2,3,4,5]", "[0,1,2,3,4,5]"), 1);
	CU_ASSERT_EQUAL(item(0)->change, CHANGE_ADDED);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "/0");
	CU_ASSERT(text_is(item(0)->shadow, item(0)->shadow_len, "0"));

	CU_ASSERT_EQUAL_FATAL(json_diff("[\"a\",\"b\",\"c\",\"d\"]", "[\"a\",\"c\",\"d\"]"), 1);
	CU_ASSERT_EQUAL(item(0)->change, CHANGE_REMOVED);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "/1");

	/* Insertion plus a change inside a later element: compared pairs
	 * are named by master index, added ones by shadow index. */
	CU_ASSERT_EQUAL_FATAL(json_diff("[{\"id\":1,\"n\":\"a\"},{\"id\":2,\"n\":\"b\"}]",
					"[{\"id\":0},{\"id\":1,\"n\":\"a\"},{\"id\":2,\"n\":\"B\"}]"), 2);
	CU_ASSERT_EQUAL(item(0)->change, CHANGE_ADDED);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "/0");
	CU_ASSERT_EQUAL(item(1)->change, CHANGE_VALUE);
	CU_ASSERT_STRING_EQUAL(item(1)->where, "/1/n");
	CU_ASSERT(json_texts_valid());

	/* Equal lengths compare index by index. */
	CU_ASSERT_EQUAL(json_diff("[1,2,3]", "[3,1,2]"), 3);
}

static void test_json_pointer_escaping(void)
{
	CU_ASSERT_EQUAL_FATAL(json_diff("{\"a/b\":{\"c~d\":1}}", "{\"a/b\":{\"c~d\":2}}"), 1);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "/a~1b/c~0d");
	char place[64];
	diff_place(item(0), place, sizeof(place));
	CU_ASSERT_STRING_EQUAL(place, "/a~1b/c~0d");
	/* an empty key is a segment too */
	CU_ASSERT_EQUAL_FATAL(json_diff("{\"\":{\"\":1}}", "{\"\":{\"\":2}}"), 1);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "//");
}

static void test_json_numbers(void)
{
	CU_ASSERT_EQUAL(json_diff("[1]", "[1.0]"), 0);
	CU_ASSERT_EQUAL(json_diff("[100]", "[1e2]"), 0);
	CU_ASSERT_EQUAL(json_diff("[1]", "[0.1e1]"), 0);
	CU_ASSERT_EQUAL(json_diff("[1.5]", "[1.50]"), 0);
	CU_ASSERT_EQUAL(json_diff("[0]", "[-0.0]"), 0);
	CU_ASSERT_EQUAL(json_diff("[0.001]", "[1E-3]"), 0);
	CU_ASSERT_EQUAL(json_diff("[-12.5e+1]", "[-125]"), 0);
	CU_ASSERT_EQUAL(json_diff("[123456789012345678901234567890]", "[1.2345678901234567890123456789e29]"),
			0);
	CU_ASSERT_EQUAL_FATAL(json_diff("[1]", "[2]"), 1);
	CU_ASSERT(text_is(item(0)->master, item(0)->master_len, "1"));
	CU_ASSERT(text_is(item(0)->shadow, item(0)->shadow_len, "2"));
	CU_ASSERT_EQUAL(json_diff("[1]", "[-1]"), 1);
	CU_ASSERT_EQUAL(json_diff("[10]", "[1]"), 1);
	CU_ASSERT_EQUAL(json_diff("[0.1]", "[0.01]"), 1);
	CU_ASSERT_EQUAL(json_diff("[1.1]", "[1.01]"), 1);
	/* beyond double precision, still exact */
	CU_ASSERT_EQUAL(json_diff("[12345678901234567890]", "[12345678901234567891]"), 1);
	CU_ASSERT_EQUAL(json_diff("[9007199254740993]", "[9007199254740992]"), 1);
	/* the text shown is what the document wrote */
	CU_ASSERT_EQUAL_FATAL(json_diff("{\"x\":1.50}", "{\"x\":2e0}"), 1);
	CU_ASSERT(text_is(item(0)->master, item(0)->master_len, "1.50"));
	CU_ASSERT(text_is(item(0)->shadow, item(0)->shadow_len, "2e0"));
}

static void test_json_strings(void)
{
	CU_ASSERT_EQUAL(json_diff("[\"\\u00e9\"]", "[\"\xc3\xa9\"]"), 0);
	CU_ASSERT_EQUAL(json_diff("[\"\\u00E9t\\u00e9\"]", "[\"\xc3\xa9t\xc3\xa9\"]"), 0);
	CU_ASSERT_EQUAL(json_diff("[\"\\ud83d\\ude00\"]", "[\"\xf0\x9f\x98\x80\"]"), 0);
	CU_ASSERT_EQUAL(json_diff("[\"a\\/b\"]", "[\"a/b\"]"), 0);
	CU_ASSERT_EQUAL(json_diff("[\"\\t\\n\"]", "[\"\\u0009\\u000a\"]"), 0);
	CU_ASSERT_EQUAL(json_diff("{\"\\u0061\":1}", "{\"a\":1}"), 0);	/* keys too */
	CU_ASSERT_EQUAL_FATAL(json_diff("[\"\\n\"]", "[\"\\\\n\"]"), 1);
	/* shown re-escaped: quotes, backslashes, controls, NUL */
	CU_ASSERT(text_is(item(0)->master, item(0)->master_len, "\"\\n\""));
	CU_ASSERT(text_is(item(0)->shadow, item(0)->shadow_len, "\"\\\\n\""));
	CU_ASSERT_EQUAL_FATAL(json_diff("[\"q\\\"\\u0000\\u001f\"]", "[\"x\"]"), 1);
	CU_ASSERT(text_is(item(0)->master, item(0)->master_len, "\"q\\\"\\u0000\\u001f\""));
	CU_ASSERT(json_texts_valid());
}

static void test_json_ignore(void)
{
	const char *ign[] = { "/users/*/updated_at", "/meta", "/a~1b" };
	struct diff_options o = { .ignore_json = ign, .nignore_json = 3 };

	CU_ASSERT_EQUAL(json_diff_opt(&o,
		"{\"users\":[{\"id\":1,\"updated_at\":\"t1\"},{\"id\":2,\"updated_at\":\"t2\"}],"
		"\"meta\":{\"took\":3,\"host\":\"a\"},\"a/b\":1}",
		"{\"users\":[{\"id\":1,\"updated_at\":\"t9\"},{\"id\":2,\"updated_at\":\"t8\"}],"
		"\"meta\":{\"took\":5},\"a/b\":2}"), 0);
	/* Not below the pattern: still compared. */
	CU_ASSERT_EQUAL_FATAL(json_diff_opt(&o, "{\"users\":[{\"id\":1}]}", "{\"users\":[{\"id\":2}]}"), 1);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "/users/0/id");
	/* Added or removed at an ignored place: skipped too. */
	CU_ASSERT_EQUAL(json_diff_opt(&o, "{\"users\":[{\"id\":1}]}",
				      "{\"users\":[{\"id\":1,\"updated_at\":\"x\"}],\"meta\":1}"), 0);
	/* Elements that differ only below an ignored place still align. */
	CU_ASSERT_EQUAL_FATAL(json_diff_opt(&o,
		"{\"users\":[{\"id\":1,\"updated_at\":\"a\"},{\"id\":2,\"updated_at\":\"b\"}]}",
		"{\"users\":[{\"id\":0,\"updated_at\":\"x\"},{\"id\":1,\"updated_at\":\"y\"},"
		"{\"id\":2,\"updated_at\":\"z\"}]}"), 1);
	CU_ASSERT_EQUAL(item(0)->change, CHANGE_ADDED);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "/users/0");
	/* "" is the whole document. */
	const char *root[] = { "" };
	struct diff_options o2 = { .ignore_json = root, .nignore_json = 1 };
	CU_ASSERT_EQUAL(json_diff_opt(&o2, "{\"a\":1}", "[2]"), 0);
	CU_ASSERT_EQUAL(json_diff_opt(&o2, "{\"a\":{\"b\":1}}", "{\"a\":{\"b\":2}}"), 0);
	CU_ASSERT_EQUAL(json_diff_opt(&o2, "{\"a\":{\"b\":1}}", "{\"a\":{\"b\":2,}}"), 1);	/* not JSON */
	/* "*" at the first segment, and many patterns (past one 64-bit word) */
	const char *many[70];
	char bufs[70][16];
	for (int i = 0; i < 69; i++) {
		snprintf(bufs[i], sizeof(bufs[i]), "/x%d", i);
		many[i] = bufs[i];
	}
	many[69] = "/*/secret";
	struct diff_options o3 = { .ignore_json = many, .nignore_json = 70 };
	CU_ASSERT_EQUAL(json_diff_opt(&o3, "{\"x68\":1,\"q\":{\"secret\":1}}", "{\"x68\":2,\"q\":{\"secret\":2}}"),
			0);
	CU_ASSERT_EQUAL(json_diff_opt(&o3, "{\"x69\":1}", "{\"x69\":2}"), 1);
}

static void test_json_invalid_falls_back(void)
{
	static const char *bad[] = {
		"{\"a\":01}", "{\"a\":1,}", "[1 2]", "{\"a\" 1}", "[\"\x01\"]", "[tru]", "{'a':1}",
		"[1.]", "[.5]", "[+1]", "[\"\\x\"]", "[\"\\u12\"]", "[1] [2]", "", "[", "[\"abc",
		"[1e]", "{\"a\":nul}", "[-]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(json_diff(bad[i], "{\"a\":1}"), 1);
		CU_ASSERT_EQUAL(item(0)->where_type, WHERE_OFFSET);
		CU_ASSERT_EQUAL(item(0)->kind, DIFF_BODY);
		if (item(0)->where_type != WHERE_OFFSET)
			fprintf(stderr, "accepted invalid JSON: %s\n", bad[i]);
	}
	/* Deep nesting past the reader's limit is compared as bytes, not a crash. */
	size_t n = 2000;
	char *a = malloc(2 * n + 1), *b = malloc(2 * n + 1);
	memset(a, '[', n);
	memset(a + n, ']', n);
	a[2 * n] = 0;
	memcpy(b, a, 2 * n + 1);
	b[n - 1] = '{';
	b[n] = '}';
	CU_ASSERT_EQUAL(json_diff(a, b), 1);
	CU_ASSERT_EQUAL(item(0)->where_type, WHERE_OFFSET);
	free(a);
	free(b);
	/* Only one side JSON: bytes. */
	struct resp m, s;
	json_resp(&m, "{\"a\":1}");
	text_resp(&s, "{\"a\":2}");
	CU_ASSERT_EQUAL(run(NULL, &m, &s), 2);	/* content-type and body */
	CU_ASSERT_PTR_NOT_NULL(find("content-type"));
}

/* Random documents, re-serialized by jansson (indented, keys sorted or not):
 * structurally the same, so no item. Then one leaf changed: one item. */
static json_t *random_json(unsigned *seed, int depth)
{
	int kind = depth > 3 ? rand_r(seed) % 4 : rand_r(seed) % 6;
	switch (kind) {
	case 0:
		return json_integer(rand_r(seed) % 1000 - 500);
	case 1: {
		char s[16];
		snprintf(s, sizeof(s), "s\xc3\xa9%d\"\\", rand_r(seed) % 100);
		return json_string(s);
	}
	case 2:
		return rand_r(seed) % 3 ? json_boolean(rand_r(seed) % 2) : json_null();
	case 3:
		return json_real((rand_r(seed) % 10000) / 8.0);
	case 4: {
		json_t *a = json_array();
		int n = rand_r(seed) % 5;
		for (int i = 0; i < n; i++)
			json_array_append_new(a, random_json(seed, depth + 1));
		return a;
	}
	default: {
		json_t *o = json_object();
		int n = rand_r(seed) % 6;
		for (int i = 0; i < n; i++) {
			char k[16];
			snprintf(k, sizeof(k), "k%d", rand_r(seed) % 20);
			json_object_set_new(o, k, random_json(seed, depth + 1));
		}
		return o;
	}
	}
}

static void test_json_random_reformat(void)
{
	unsigned seed = 12345;
	for (int round = 0; round < 300; round++) {
		json_t *j = json_object();
		json_object_set_new(j, "root", random_json(&seed, 0));
		char *a = json_dumps(j, JSON_COMPACT);
		char *b = json_dumps(j, JSON_INDENT(3) | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
		CU_ASSERT_EQUAL(json_diff(a, b), 0);
		/* Change one leaf: exactly one item, with valid JSON texts. */
		json_object_set_new(j, "extra", json_integer(round));
		char *c = json_dumps(j, JSON_COMPACT);
		CU_ASSERT_EQUAL(json_diff(a, c), 1);
		CU_ASSERT(json_texts_valid());
		free(a);
		free(b);
		free(c);
		json_decref(j);
	}
}

/* A random mutation somewhere inside j: change, add or remove a member or
 * an element. */
static void mutate(json_t *j, unsigned *seed)
{
	for (;;) {
		size_t n = json_is_object(j) ? json_object_size(j) : json_array_size(j);
		bool descend = n && rand_r(seed) % 3 != 0;
		if (descend) {
			json_t *child;
			if (json_is_object(j)) {
				size_t k = (size_t)rand_r(seed) % n, i = 0;
				const char *key;
				json_t *v;
				child = NULL;
				json_object_foreach(j, key, v) {
					if (i++ == k)
						child = v;
				}
			} else {
				child = json_array_get(j, (size_t)rand_r(seed) % n);
			}
			if (json_is_object(child) || json_is_array(child)) {
				j = child;
				continue;
			}
		}
		int op = rand_r(seed) % 3;
		if (json_is_object(j)) {
			char k[16];
			snprintf(k, sizeof(k), "k%d", rand_r(seed) % 24);
			if (op == 0 && json_object_get(j, k))
				json_object_del(j, k);
			else
				json_object_set_new(j, k, random_json(seed, 3));
		} else {
			size_t at = n ? (size_t)rand_r(seed) % (n + 1) : 0;
			if (op == 0 && at < n)
				json_array_remove(j, at);
			else if (op == 1 && at < n)
				json_array_set_new(j, at, random_json(seed, 3));
			else
				json_array_insert_new(j, at, random_json(seed, 3));
		}
		return;
	}
}

struct snap {
	size_t n;
	char text[64][160];
};

static void snapshot(struct snap *sn)
{
	sn->n = diff_count(R);
	for (size_t i = 0; i < sn->n && i < 64; i++) {
		const struct diff_item *it = item(i);
		snprintf(sn->text[i], sizeof(sn->text[i]), "%d %d %s|%.*s|%.*s", it->kind, it->change,
			 it->where ? it->where : "-", (int)it->master_len, it->master ? it->master : "(absent)",
			 (int)it->shadow_len, it->shadow ? it->shadow : "(absent)");
	}
}

/* Comparing against the shadow re-formatted (which defeats the shortcut
 * that parses only the changed value) gives the very same items. */
static void test_json_confined_equals_full(void)
{
	unsigned seed = 4242;
	const char *ign[] = { "/root/k3", "/root/*/k5", "/a/b/1/root/k3", "/a/b/*/root/*/k5" };
	struct diff_options o = { .ignore_json = ign, .nignore_json = 4 };
	for (int round = 0; round < 1200; round++) {
		/* half the time the changed value sits three levels down */
		json_t *j = json_object(), *r = random_json(&seed, 0);
		json_object_set_new(j, "root", r);
		json_object_set_new(j, "tail", json_string("end"));
		if (round % 4 >= 2) {
			json_t *env = json_pack("{s:s, s:{s:[i, O, i]}}", "tail", "end", "a", "b", 0, j, 2);
			json_decref(j);
			j = env;
		}
		json_t *k = json_deep_copy(j);
		json_t *kr = round % 4 >= 2 ? json_array_get(json_object_get(json_object_get(k, "a"), "b"), 1) : k;
		int muts = 1 + rand_r(&seed) % 3;
		for (int i = 0; i < muts; i++)
			mutate(json_object_get(kr, "root"), &seed);
		char *a = json_dumps(j, JSON_COMPACT);
		char *b = json_dumps(k, JSON_COMPACT);
		char *pb = json_dumps(k, JSON_INDENT(1));
		const struct diff_options *opt = round % 2 ? &o : NULL;
		struct snap x, y;
		json_diff_opt(opt, a, b);
		snapshot(&x);
		json_diff_opt(opt, a, pb);
		snapshot(&y);
		CU_ASSERT_EQUAL(x.n, y.n);
		bool same = x.n == y.n;
		for (size_t i = 0; same && i < x.n && i < 64; i++)
			same = strcmp(x.text[i], y.text[i]) == 0;
		CU_ASSERT(same);
		if (!same)
			fprintf(stderr, "\nconfined/full differ:\n%s\n%s\n", a, b);
		free(a);
		free(b);
		free(pb);
		json_decref(j);
		json_decref(k);
	}
}

/* ------------------------------------------------------------ content coding */

static void test_gzip_identity(void)
{
	const char *body = "{\"a\":[1,2,3],\"b\":\"hello hello hello hello\"}";
	size_t zl;
	char *gz = gzip_of(body, strlen(body), 15 + 16, &zl);
	struct resp m, s;

	json_resp(&m, body);
	resp_init(&s, 200, gz, zl);
	hdr(&s, "Content-Type", "application/json");
	hdr(&s, "Content-Encoding", "gzip");
	CU_ASSERT_EQUAL(run(NULL, &m, &s), 0);
	/* both gzip, different compression levels of one text */
	CU_ASSERT_EQUAL(run(NULL, &s, &s), 0);
	/* gzip with a changed field: structural diff after decoding */
	const char *body2 = "{\"a\":[1,2,3],\"b\":\"bye\"}";
	size_t zl2;
	char *gz2 = gzip_of(body2, strlen(body2), 15 + 16, &zl2);
	struct resp s2;
	resp_init(&s2, 200, gz2, zl2);
	hdr(&s2, "Content-Type", "application/json");
	hdr(&s2, "content-encoding", "x-gzip");
	CU_ASSERT_EQUAL_FATAL(run(NULL, &m, &s2), 1);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "/b");
	/* two gzip members back to back are one body */
	size_t h1, h2;
	char *p1 = gzip_of("{\"a\":[1,2,3],", 13, 15 + 16, &h1);
	char *p2 = gzip_of("\"b\":\"bye\"}", 10, 15 + 16, &h2);
	char *cat = malloc(h1 + h2);
	memcpy(cat, p1, h1);
	memcpy(cat + h1, p2, h2);
	struct resp s3;
	resp_init(&s3, 200, cat, h1 + h2);
	hdr(&s3, "Content-Type", "application/json");
	hdr(&s3, "Content-Encoding", "gzip");
	CU_ASSERT_EQUAL(run(NULL, &s2, &s3), 0);
	free(gz);
	free(gz2);
	free(p1);
	free(p2);
	free(cat);
}

static void test_deflate(void)
{
	const char *body = "<html>same text, deflated two ways</html>";
	size_t zl, rl;
	char *zlib = gzip_of(body, strlen(body), 15, &zl);
	char *raw = gzip_of(body, strlen(body), -15, &rl);
	struct resp m, s, t;

	text_resp(&m, body);
	resp_init(&s, 200, zlib, zl);
	hdr(&s, "Content-Type", "text/html; charset=utf-8");
	hdr(&s, "Content-Encoding", "deflate");
	resp_init(&t, 200, raw, rl);
	hdr(&t, "Content-Type", "text/html; charset=utf-8");
	hdr(&t, "Content-Encoding", "deflate");
	CU_ASSERT_EQUAL(run(NULL, &m, &s), 0);
	CU_ASSERT_EQUAL(run(NULL, &m, &t), 0);
	CU_ASSERT_EQUAL(run(NULL, &s, &t), 0);
	free(zlib);
	free(raw);
}

static void test_decode_failures(void)
{
	const char *body = "plain text body";
	struct resp m, s;
	/* Not gzip at all: compared as received. */
	text_resp(&m, body);
	text_resp(&s, body);
	hdr(&s, "Content-Encoding", "gzip");
	CU_ASSERT_EQUAL(run(NULL, &m, &s), 0);
	/* A truncated gzip stream: compared as received, so it differs. */
	size_t zl;
	char *gz = gzip_of(body, strlen(body), 15 + 16, &zl);
	struct resp t;
	resp_init(&t, 200, gz, zl / 2);
	hdr(&t, "Content-Type", "text/html; charset=utf-8");
	hdr(&t, "Content-Encoding", "gzip");
	CU_ASSERT_EQUAL(run(NULL, &m, &t), 1);
	CU_ASSERT_EQUAL(item(0)->where_type, WHERE_OFFSET);
	/* Unknown coding: as received. */
	struct resp u;
	text_resp(&u, body);
	hdr(&u, "Content-Encoding", "br");
	CU_ASSERT_EQUAL(run(NULL, &m, &u), 0);
	/* Over max_decoded: as received (a bomb is not inflated). */
	size_t big = 1 << 20;
	char *zeros = calloc(1, big);
	size_t bl;
	char *bomb = gzip_of(zeros, big, 15 + 16, &bl);
	struct resp v, w;
	resp_init(&v, 200, bomb, bl);
	hdr(&v, "Content-Encoding", "gzip");
	resp_init(&w, 200, zeros, big);
	struct diff_options o = { .max_decoded = 4096 };
	CU_ASSERT_EQUAL(run(&o, &w, &v), 1);
	CU_ASSERT_EQUAL(run(NULL, &w, &v), 0);
	free(zeros);
	free(bomb);
	free(gz);
}

/* ---------------------------------------------------------------- byte diffs */

static void test_binary(void)
{
	static const char a[] = { 'a', 0, 'b', 0, 'c' }, b[] = { 'a', 0, 'B', 0, 'c' };
	struct resp m, s;

	resp_init(&m, 200, a, sizeof(a));
	resp_init(&s, 200, b, sizeof(b));
	hdr(&m, "Content-Type", "application/octet-stream");
	hdr(&s, "Content-Type", "application/octet-stream");
	CU_ASSERT_EQUAL_FATAL(run(NULL, &m, &s), 1);
	const struct diff_item *it = item(0);
	CU_ASSERT_EQUAL(it->kind, DIFF_BODY);
	CU_ASSERT_EQUAL(it->where_type, WHERE_OFFSET);
	CU_ASSERT_EQUAL(it->offset, 2);
	CU_ASSERT_EQUAL_FATAL(it->nranges, 1);
	CU_ASSERT_EQUAL(it->ranges[0].start, 2);
	CU_ASSERT_EQUAL(it->ranges[0].end, 3);
	CU_ASSERT_EQUAL(it->master_len, 5);	/* excerpts hold NULs */
	CU_ASSERT(memcmp(it->master, a, 5) == 0);
	CU_ASSERT(memcmp(it->shadow, b, 5) == 0);
	char place[16];
	diff_place(it, place, sizeof(place));
	CU_ASSERT_STRING_EQUAL(place, "body");
	/* empty vs not */
	resp_init(&s, 200, "", 0);
	hdr(&s, "Content-Type", "application/octet-stream");
	CU_ASSERT_EQUAL_FATAL(run(NULL, &m, &s), 1);
	CU_ASSERT_EQUAL(item(0)->offset, 0);
	CU_ASSERT_EQUAL(item(0)->ranges[0].end, 5);
	CU_ASSERT_EQUAL(item(0)->shadow_len, 0);
	resp_init(&s, 200, NULL, 0);
	resp_init(&m, 200, NULL, 0);
	CU_ASSERT_EQUAL(run(NULL, &m, &s), 0);
}

static void test_token_ranges(void)
{
	const char *a = "<p>Updated 2024-01-01T10:00:00Z by ann</p><p>id 550e8400-e29b-41d4-a716-446655440000</p>";
	const char *b = "<p>Updated 2024-01-01T10:00:05Z by ann</p><p>id 6ba7b810-9dad-11d1-80b4-00c04fd430c8</p>";
	CU_ASSERT_EQUAL_FATAL(text_diff(a, b), 1);
	const struct diff_item *it = item(0);
	CU_ASSERT_EQUAL_FATAL(it->nranges, 2);
	/* the whole timestamp token, not just the differing digit */
	size_t ts = (size_t)(strstr(a, "2024") - a);
	CU_ASSERT_EQUAL(it->ranges[0].start, ts);
	CU_ASSERT_EQUAL(it->ranges[0].end, ts + strlen("2024-01-01T10:00:00Z"));
	CU_ASSERT_EQUAL(it->offset, ts);
	size_t id = (size_t)(strstr(a, "550e") - a);
	CU_ASSERT_EQUAL(it->ranges[1].start, id);
	CU_ASSERT_EQUAL(it->ranges[1].end, id + 36);
	CU_ASSERT_EQUAL(it->ranges[1].shadow_start, id);
	CU_ASSERT(contains(it->master, it->master_len, "10:00:00Z"));
	CU_ASSERT(contains(it->shadow, it->shadow_len, "10:00:05Z"));
	CU_ASSERT(it->master_len <= 48);

	/* a pure insertion is an empty range at the insertion point */
	CU_ASSERT_EQUAL_FATAL(text_diff("alpha beta gamma", "alpha beta NEW gamma"), 1);
	it = item(0);
	CU_ASSERT_EQUAL_FATAL(it->nranges, 1);
	CU_ASSERT_EQUAL(it->ranges[0].start, it->ranges[0].end);
	CU_ASSERT_EQUAL(it->ranges[0].shadow_end - it->ranges[0].shadow_start, 4);
	CU_ASSERT(contains(it->shadow, it->shadow_len, "NEW"));
	/* a deletion */
	CU_ASSERT_EQUAL_FATAL(text_diff("one two three", "one three"), 1);
	CU_ASSERT_EQUAL(item(0)->ranges[0].shadow_start, item(0)->ranges[0].shadow_end);
	/* a longer token in the shadow ("abc" -> "abcd") */
	CU_ASSERT_EQUAL_FATAL(text_diff("x abc y", "x abcd y"), 1);
	CU_ASSERT_EQUAL(item(0)->ranges[0].start, 2);
	CU_ASSERT_EQUAL(item(0)->ranges[0].end, 5);
	CU_ASSERT_EQUAL(item(0)->ranges[0].shadow_end, 6);
}

static void test_excerpt_utf8(void)
{
	/* the excerpt window never splits a UTF-8 sequence */
	char a[256], b[256];
	strcpy(a, "");
	for (int i = 0; i < 20; i++)
		strcat(a, "\xc3\xa9");
	strcpy(b, a);
	strcat(a, " X ");
	strcat(b, " Y ");
	for (int i = 0; i < 20; i++) {
		strcat(a, "\xe2\x82\xac");
		strcat(b, "\xe2\x82\xac");
	}
	struct diff_options o = { .excerpt_max = 17 };
	struct resp m, s;
	text_resp(&m, a);
	text_resp(&s, b);
	CU_ASSERT_EQUAL_FATAL(run(&o, &m, &s), 1);
	const struct diff_item *it = item(0);
	CU_ASSERT(it->master_len <= 17);
	CU_ASSERT(((unsigned char)it->master[0] & 0xc0) != 0x80);
	CU_ASSERT(contains(it->master, it->master_len, "X"));
	unsigned char last = (unsigned char)it->master[it->master_len - 1];
	CU_ASSERT(last < 0x80 || (last & 0xc0) == 0x80);	/* ends on a sequence's end or ASCII */
}

/* Property: applying the ranges to master yields the shadow, and every
 * range starts and ends on token boundaries. */
static bool tok(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("+/=._:-", ch));
}

static bool boundary(const char *b, size_t len, size_t i)
{
	return i == 0 || i >= len || !tok((unsigned char)b[i - 1]) || !tok((unsigned char)b[i]);
}

static void test_token_ranges_random(void)
{
	static const char *words[] = { "a", "bb", "ccc", "d:d", "e-1", " ", ",", "\n", "<", "=", "x.y", "\0" };
	unsigned seed = 99;
	for (int round = 0; round < 400; round++) {
		char a[600], b[700];
		size_t al = 0, bl = 0;
		int n = rand_r(&seed) % 60;
		for (int i = 0; i < n; i++) {
			const char *w = words[rand_r(&seed) % 12];
			size_t wl = *w ? strlen(w) : 1;
			memcpy(a + al, w, wl);
			al += wl;
			int op = rand_r(&seed) % 10;
			if (op == 0)
				continue;	/* delete */
			if (op == 1) {		/* replace */
				w = words[rand_r(&seed) % 12];
				wl = *w ? strlen(w) : 1;
			}
			memcpy(b + bl, w, wl);
			bl += wl;
			if (op == 2) {		/* insert */
				w = words[rand_r(&seed) % 12];
				wl = *w ? strlen(w) : 1;
				memcpy(b + bl, w, wl);
				bl += wl;
			}
		}
		struct resp m, s;
		resp_init(&m, 200, a, al);
		resp_init(&s, 200, b, bl);
		size_t k = run(NULL, &m, &s);
		bool same = al == bl && memcmp(a, b, al) == 0;
		CU_ASSERT_EQUAL(k, same ? 0 : 1);
		if (k != 1)
			continue;
		const struct diff_item *it = item(0);
		char out[800];
		size_t ol = 0, pos = 0;
		bool ok = true;
		for (size_t r = 0; r < it->nranges; r++) {
			const struct diff_range *g = &it->ranges[r];
			ok &= g->start >= pos && g->end >= g->start && g->end <= al;
			ok &= boundary(a, al, g->start) && boundary(a, al, g->end);
			ok &= boundary(b, bl, g->shadow_start) && boundary(b, bl, g->shadow_end);
			memcpy(out + ol, a + pos, g->start - pos);
			ol += g->start - pos;
			memcpy(out + ol, b + g->shadow_start, g->shadow_end - g->shadow_start);
			ol += g->shadow_end - g->shadow_start;
			pos = g->end;
		}
		memcpy(out + ol, a + pos, al - pos);
		ol += al - pos;
		ok &= ol == bl && memcmp(out, b, bl) == 0;
		CU_ASSERT(ok);
	}
}

static void test_large_text_fallback(void)
{
	/* Too different to align within the bound: one range from the first
	 * to the last differing byte. */
	size_t n = 3 << 20;
	char *a = malloc(n), *b = malloc(n);
	for (size_t i = 0; i < n; i++) {
		a[i] = (i % 7) ? 'a' : ' ';
		b[i] = (i % 7) ? ((i / 7) % 2 ? 'b' : 'a') : ' ';
	}
	struct resp m, s;
	resp_init(&m, 200, a, n);
	resp_init(&s, 200, b, n);
	CU_ASSERT_EQUAL_FATAL(run(NULL, &m, &s), 1);
	const struct diff_item *it = item(0);
	CU_ASSERT_EQUAL(it->nranges, 1);
	CU_ASSERT_EQUAL(it->offset, 8);
	CU_ASSERT(it->ranges[0].end > n - 8);
	/* A few changes in a large body still align exactly. */
	memcpy(b, a, n);
	b[1000] = 'X';
	b[2000000] = 'Y';
	CU_ASSERT_EQUAL_FATAL(run(NULL, &m, &s), 1);
	CU_ASSERT_EQUAL(item(0)->nranges, 2);
	CU_ASSERT_EQUAL(item(0)->offset, 995);
	free(a);
	free(b);
}

/* ---------------------------------------------------------- truncated bodies */

static void test_truncated(void)
{
	char *a = malloc(4096), *b = malloc(4096);
	memset(a, 'x', 4096);
	memset(b, 'x', 4096);
	struct resp m, s;
	resp_init(&m, 200, a, 1000);
	resp_init(&s, 200, b, 1000);
	m.r.body_total = s.r.body_total = 4096;
	m.r.body_crc = s.r.body_crc = 0x1a2b3c4d;
	CU_ASSERT_EQUAL(run(NULL, &m, &s), 0);
	/* Same prefix, different hash: located at the end of the capture. */
	s.r.body_crc = 0x5e6f7081;
	CU_ASSERT_EQUAL_FATAL(run(NULL, &m, &s), 1);
	const struct diff_item *it = item(0);
	CU_ASSERT_EQUAL(it->kind, DIFF_BODY);
	CU_ASSERT_EQUAL(it->where_type, WHERE_OFFSET);
	CU_ASSERT_EQUAL(it->offset, 1000);
	CU_ASSERT(contains(it->master, it->master_len, "length 4096, crc32 1a2b3c4d"));
	CU_ASSERT(contains(it->shadow, it->shadow_len, "crc32 5e6f7081"));
	CU_ASSERT(contains(it->master, it->master_len, "1000 bytes captured"));
	/* Different inside the prefix: located there, excerpt shown. */
	b[300] = 'Y';
	CU_ASSERT_EQUAL_FATAL(run(NULL, &m, &s), 1);
	CU_ASSERT_EQUAL(item(0)->offset, 300);
	CU_ASSERT(contains(item(0)->shadow, item(0)->shadow_len, "from byte 300: Yxx"));
	/* Different lengths, one side whole. */
	resp_init(&s, 200, b, 1000);
	b[300] = 'x';
	CU_ASSERT_EQUAL_FATAL(run(NULL, &m, &s), 1);
	CU_ASSERT_EQUAL(item(0)->offset, 1000);
	CU_ASSERT(contains(item(0)->shadow, item(0)->shadow_len, "length 1000"));
	/* Truncated JSON is never parsed: compared by length and hash. */
	const char *j = "{\"a\":1}";
	json_resp(&m, j);
	json_resp(&s, j);
	m.r.body_len = s.r.body_len = 3;
	m.r.body_crc = s.r.body_crc = 7;
	CU_ASSERT_EQUAL(run(NULL, &m, &s), 0);
	free(a);
	free(b);
}

/* ---------------------------------------------------------- status, headers */

static void test_status(void)
{
	struct resp m, s;
	text_resp(&m, "x");
	text_resp(&s, "x");
	s.r.status = 500;
	CU_ASSERT_EQUAL_FATAL(run(NULL, &m, &s), 1);
	const struct diff_item *it = item(0);
	CU_ASSERT_EQUAL(it->kind, DIFF_STATUS);
	CU_ASSERT_EQUAL(it->where_type, WHERE_NONE);
	CU_ASSERT_PTR_NULL(it->where);
	CU_ASSERT(text_is(it->master, it->master_len, "200"));
	CU_ASSERT(text_is(it->shadow, it->shadow_len, "500"));
	char place[16];
	diff_place(it, place, sizeof(place));
	CU_ASSERT_STRING_EQUAL(place, "status");
}

static void test_headers(void)
{
	struct resp m, s;
	text_resp(&m, "x");
	text_resp(&s, "x");
	/* case of names, ignored set, order of different names */
	hdr(&m, "X-Thing", "1");
	hdr(&m, "Date", "Mon, 01 Jan 2024 00:00:00 GMT");
	hdr(&m, "Content-Length", "1");
	hdr(&m, "Connection", "keep-alive");
	hdr(&m, "Keep-Alive", "timeout=5");
	hdr(&m, "Vary", "Accept");
	hdr(&s, "vary", "Accept");
	hdr(&s, "x-thing", "1");
	hdr(&s, "DATE", "Tue, 02 Jan 2024 00:00:00 GMT");
	hdr(&s, "Transfer-Encoding", "chunked");
	hdr(&s, "TE", "trailers");
	hdr(&s, "Trailer", "x");
	hdr(&s, "Upgrade", "h2c");
	hdr(&s, "Proxy-Connection", "close");
	hdr(&s, "Content-Encoding", "identity");
	CU_ASSERT_EQUAL(run(NULL, &m, &s), 0);

	/* option names, any case */
	const char *ign[] = { "x-request-id" };
	struct diff_options o = { .ignore_headers = ign, .nignore_headers = 1 };
	hdr(&m, "X-Request-Id", "a");
	hdr(&s, "X-REQUEST-ID", "b");
	CU_ASSERT_EQUAL(run(&o, &m, &s), 0);
	CU_ASSERT_EQUAL_FATAL(run(NULL, &m, &s), 1);
	CU_ASSERT_STRING_EQUAL(item(0)->where, "x-request-id");
	CU_ASSERT_EQUAL(item(0)->kind, DIFF_HEADER);
	CU_ASSERT_EQUAL(item(0)->change, CHANGE_VALUE);
	CU_ASSERT(text_is(item(0)->master, item(0)->master_len, "a"));

	/* repeats joined with ", " in order; OWS trimmed */
	text_resp(&m, "x");
	text_resp(&s, "x");
	hdr(&m, "Cache-Control", "no-cache");
	hdr(&m, "X-A", "1");
	hdr(&m, "Cache-Control", " max-age=0 ");
	hdr(&s, "cache-control", "no-cache, max-age=0");
	hdr(&s, "X-A", "1");
	CU_ASSERT_EQUAL(run(NULL, &m, &s), 0);
	text_resp(&s, "x");
	hdr(&s, "X-A", "1");
	hdr(&s, "Cache-Control", "max-age=0");
	hdr(&s, "Cache-Control", "no-cache");
	CU_ASSERT_EQUAL_FATAL(run(NULL, &m, &s), 1);
	CU_ASSERT(text_is(item(0)->master, item(0)->master_len, "no-cache, max-age=0"));
	CU_ASSERT(text_is(item(0)->shadow, item(0)->shadow_len, "max-age=0, no-cache"));

	/* missing on one side: that side NULL; where lowercase */
	text_resp(&m, "x");
	text_resp(&s, "x");
	hdr(&m, "X-Only-Master", "m");
	hdr(&s, "X-Only-Shadow", "s");
	CU_ASSERT_EQUAL_FATAL(run(NULL, &m, &s), 2);
	const struct diff_item *a = find("x-only-master"), *b = find("x-only-shadow");
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_EQUAL(a->change, CHANGE_REMOVED);
	CU_ASSERT_PTR_NULL(a->shadow);
	CU_ASSERT(text_is(a->master, a->master_len, "m"));
	CU_ASSERT_EQUAL(b->change, CHANGE_ADDED);
	CU_ASSERT_PTR_NULL(b->master);
	char place[32];
	diff_place(b, place, sizeof(place));
	CU_ASSERT_STRING_EQUAL(place, "x-only-shadow");
	/* an empty value is present, not absent */
	hdr(&s, "X-Only-Master", "");
	CU_ASSERT_EQUAL(run(NULL, &m, &s), 2);
	CU_ASSERT_EQUAL(find("x-only-master")->change, CHANGE_VALUE);
	CU_ASSERT_EQUAL(find("x-only-master")->shadow_len, 0);
}

static void test_json_type_detection(void)
{
	CU_ASSERT(diff_is_json_type("application/json", 16));
	const char *yes[] = { "application/json; charset=utf-8", "Application/JSON", " application/json ;x=y",
			      "application/problem+json", "application/vnd.api+json; charset=utf-8",
			      "text/x+JSON" };
	const char *no[] = { "text/html", "application/jsonp", "application/json-seq", "json",
			     "application/+json", "/json", "application/x-json-stream", "" };
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		CU_ASSERT(diff_is_json_type(yes[i], strlen(yes[i])));
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		CU_ASSERT_FALSE(diff_is_json_type(no[i], strlen(no[i])));
	CU_ASSERT_FALSE(diff_is_json_type(NULL, 0));
}

/* ------------------------------------------------------------------- errors */

static void test_errors(void)
{
	struct resp m, s;
	text_resp(&m, "x");
	resp_init(&s, 0, NULL, 0);
	s.r.error = "timeout";
	CU_ASSERT_EQUAL_FATAL(run(NULL, &m, &s), 1);
	const struct diff_item *it = item(0);
	CU_ASSERT_EQUAL(it->kind, DIFF_ERROR);
	CU_ASSERT_EQUAL(it->where_type, WHERE_NONE);
	CU_ASSERT_PTR_NULL(it->master);
	CU_ASSERT(text_is(it->shadow, it->shadow_len, "timeout"));
	char place[16];
	diff_place(it, place, sizeof(place));
	CU_ASSERT_STRING_EQUAL(place, "error");
	CU_ASSERT_FALSE(diff_matches(R));
	/* master failed: still an error item */
	CU_ASSERT_EQUAL_FATAL(run(NULL, &s, &m), 1);
	CU_ASSERT(text_is(item(0)->master, item(0)->master_len, "timeout"));
	CU_ASSERT_PTR_NULL(item(0)->shadow);
	/* both failed */
	struct resp t;
	resp_init(&t, 0, NULL, 0);
	t.r.error = "connect";
	CU_ASSERT_EQUAL_FATAL(run(NULL, &s, &t), 1);
	CU_ASSERT(text_is(item(0)->master, item(0)->master_len, "timeout"));
	CU_ASSERT(text_is(item(0)->shadow, item(0)->shadow_len, "connect"));
}

/* -------------------------------------------------------------------- noise */

static void test_noise_json(void)
{
	struct diff_result *ref = diff_result_new();
	struct resp m, r, s;
	json_resp(&m, "{\"user\":{\"name\":\"a\",\"seen\":1},\"username\":\"x\",\"n\":1}");
	json_resp(&r, "{\"user\":{\"name\":\"a\",\"seen\":2},\"username\":\"x\",\"n\":1}");
	json_resp(&s, "{\"user\":{\"name\":\"a\",\"seen\":3},\"username\":\"y\",\"n\":1}");
	CU_ASSERT_EQUAL(diff_compare(NULL, &m.r, &r.r, ref), 1);
	CU_ASSERT_EQUAL(run(NULL, &m, &s), 2);
	diff_mark_noise(R, ref);
	CU_ASSERT_TRUE(find("/user/seen")->noise);
	CU_ASSERT_FALSE(find("/username")->noise);
	CU_ASSERT_FALSE(diff_matches(R));

	/* ancestor: the reference differs at /user */
	diff_result_reset(ref);
	json_resp(&r, "{\"user\":null,\"username\":\"x\",\"n\":1}");
	diff_compare(NULL, &m.r, &r.r, ref);
	json_resp(&s, "{\"user\":{\"name\":\"b\",\"seen\":1},\"username\":\"x\",\"n\":1}");
	CU_ASSERT_EQUAL(run(NULL, &m, &s), 1);
	diff_mark_noise(R, ref);
	CU_ASSERT_TRUE(diff_matches(R));
	/* /username is not below /user */
	json_resp(&s, "{\"user\":{\"name\":\"a\",\"seen\":1},\"username\":\"q\",\"n\":1}");
	run(NULL, &m, &s);
	diff_mark_noise(R, ref);
	CU_ASSERT_FALSE(diff_matches(R));
	/* a root difference in the reference covers everything */
	diff_result_reset(ref);
	json_resp(&r, "[]");
	diff_compare(NULL, &m.r, &r.r, ref);
	run(NULL, &m, &s);
	diff_mark_noise(R, ref);
	CU_ASSERT_TRUE(diff_matches(R));
	/* the reference's own differences: all noise */
	diff_mark_all_noise(ref);
	CU_ASSERT_TRUE(diff_matches(ref));
	diff_result_free(ref);
}

static void test_noise_headers_status_errors(void)
{
	struct diff_result *ref = diff_result_new();
	struct resp m, r, s;
	text_resp(&m, "x");
	text_resp(&r, "x");
	text_resp(&s, "x");
	hdr(&m, "X-Served-By", "host1");
	hdr(&r, "X-Served-By", "host2");
	hdr(&s, "x-served-by", "host3");
	hdr(&s, "X-New", "1");
	r.r.status = 503;
	s.r.status = 500;
	diff_compare(NULL, &m.r, &r.r, ref);
	CU_ASSERT_EQUAL(run(NULL, &m, &s), 3);
	diff_mark_noise(R, ref);
	CU_ASSERT_TRUE(find("x-served-by")->noise);
	CU_ASSERT_FALSE(find("x-new")->noise);
	CU_ASSERT_TRUE(item(0)->kind == DIFF_STATUS && item(0)->noise);
	/* errors are never noise, even when the reference failed too */
	diff_result_reset(ref);
	struct resp e;
	resp_init(&e, 0, NULL, 0);
	e.r.error = "timeout";
	diff_compare(NULL, &m.r, &e.r, ref);
	run(NULL, &m, &e);
	diff_mark_noise(R, ref);
	CU_ASSERT_FALSE(item(0)->noise);
	CU_ASSERT_FALSE(diff_matches(R));
	diff_mark_noise(R, NULL);	/* no reference: nothing changes */
	CU_ASSERT_FALSE(diff_matches(R));
	diff_result_free(ref);
}

static void test_noise_ranges(void)
{
	struct diff_result *ref = diff_result_new();
	struct resp m, r, s;
	const char *mb = "<p>at 10:00:00 id 42 by ann</p>";
	text_resp(&m, mb);
	text_resp(&r, "<p>at 10:00:07 id 42 by ann</p>");
	text_resp(&s, "<p>at 10:00:09 id 43 by ann</p>");
	diff_compare(NULL, &m.r, &r.r, ref);
	CU_ASSERT_EQUAL_FATAL(run(NULL, &m, &s), 1);
	const struct diff_item *it = item(0);
	CU_ASSERT_EQUAL_FATAL(it->nranges, 2);
	CU_ASSERT_EQUAL(it->offset, 6);
	diff_mark_noise(R, ref);
	CU_ASSERT_TRUE(it->ranges[0].noise);
	CU_ASSERT_FALSE(it->ranges[1].noise);
	CU_ASSERT_FALSE(it->noise);
	/* the offset and excerpts move to the first range that is not noise */
	CU_ASSERT_EQUAL(it->offset, (uint64_t)(strstr(mb, "42") - mb));
	CU_ASSERT(contains(it->shadow, it->shadow_len, "43"));
	CU_ASSERT_FALSE(diff_matches(R));

	/* all ranges noise: the item is noise, the record matches, and the
	 * offset is the first range's */
	text_resp(&s, "<p>at 10:00:09 id 42 by ann</p>");
	run(NULL, &m, &s);
	diff_mark_noise(R, ref);
	CU_ASSERT_TRUE(item(0)->noise);
	CU_ASSERT_EQUAL(item(0)->offset, 6);
	CU_ASSERT_TRUE(diff_matches(R));

	/* a pure insertion touching a reference range is noise; one apart is not */
	diff_result_reset(ref);
	text_resp(&m, "a b c");
	text_resp(&r, "a X c");		/* range [2,3) */
	text_resp(&s, "a b Y c");	/* insertion at 4: not touching [2,3) */
	diff_compare(NULL, &m.r, &r.r, ref);
	run(NULL, &m, &s);
	CU_ASSERT_EQUAL(item(0)->ranges[0].start, 4);
	diff_mark_noise(R, ref);
	CU_ASSERT_FALSE(item(0)->noise);
	text_resp(&s, "a bY c");	/* changes token [2,3) too */
	run(NULL, &m, &s);
	diff_mark_noise(R, ref);
	CU_ASSERT_TRUE(item(0)->noise);
	diff_result_reset(ref);
	text_resp(&r, "a b Q c");	/* the reference inserts at 4 as well */
	diff_compare(NULL, &m.r, &r.r, ref);
	text_resp(&s, "a b Y c");
	run(NULL, &m, &s);
	diff_mark_noise(R, ref);
	CU_ASSERT_TRUE(item(0)->noise);
	/* JSON places never cancel byte ranges and the reverse */
	diff_result_reset(ref);
	json_resp(&r, "[1]");
	json_resp(&m, "[2]");
	diff_compare(NULL, &m.r, &r.r, ref);
	text_resp(&s, "zzz");
	text_resp(&m, "yyy");
	run(NULL, &m, &s);
	diff_mark_noise(R, ref);
	CU_ASSERT_FALSE(diff_matches(R));
	diff_result_free(ref);
}

/* -------------------------------------------------------------- caps, place */

static void test_max_items(void)
{
	char a[4096] = "{", b[4096] = "{";
	for (int i = 0; i < 100; i++) {
		char m[32];
		snprintf(m, sizeof(m), "%s\"k%03d\":%d", i ? "," : "", i, i);
		strcat(a, m);
		snprintf(m, sizeof(m), "%s\"k%03d\":%d", i ? "," : "", i, i + 1);
		strcat(b, m);
	}
	strcat(a, "}");
	strcat(b, "}");
	struct diff_options o = { .max_items = 10 };
	CU_ASSERT_EQUAL(json_diff_opt(&o, a, b), 10);
	CU_ASSERT_TRUE(diff_truncated(R));
	CU_ASSERT_STRING_EQUAL(item(9)->where, "/k009");
	CU_ASSERT_EQUAL(json_diff(a, b), 64);	/* default */
	CU_ASSERT_TRUE(diff_truncated(R));
	CU_ASSERT_EQUAL(json_diff("[1]", "[2]"), 1);
	CU_ASSERT_FALSE(diff_truncated(R));	/* reset clears it */
	/* the cap is per comparison: a second one appends its own */
	struct resp m, s;
	json_resp(&m, a);
	json_resp(&s, b);
	diff_result_reset(R);
	CU_ASSERT_EQUAL(diff_compare(&o, &m.r, &s.r, R), 10);
	CU_ASSERT_EQUAL(diff_compare(&o, &m.r, &s.r, R), 10);
	CU_ASSERT_EQUAL(diff_count(R), 20);
}

static void test_place(void)
{
	CU_ASSERT_EQUAL_FATAL(json_diff("{\"items\":[{\"name\":\"a\"},{\"name\":\"b\"}],\"users\":{\"123\":1}}",
					"{\"items\":[{\"name\":\"a\"},{\"name\":\"c\"}],\"users\":{\"123\":2}}"), 2);
	char place[64];
	CU_ASSERT_EQUAL(diff_place(find("/items/1/name"), place, sizeof(place)), strlen("/items/*/name"));
	CU_ASSERT_STRING_EQUAL(place, "/items/*/name");
	/* an object key that looks like an index stays: only arrays fold */
	diff_place(find("/users/123"), place, sizeof(place));
	CU_ASSERT_STRING_EQUAL(place, "/users/123");
	/* cut to the buffer, NUL-terminated */
	CU_ASSERT_EQUAL(diff_place(find("/items/1/name"), place, 5), 4);
	CU_ASSERT_STRING_EQUAL(place, "/ite");
	CU_ASSERT_EQUAL(diff_place(find("/items/1/name"), place, 0), 0);

	/* a cut never splits an escape or a UTF-8 sequence (fuzz_diff) */
	CU_ASSERT_EQUAL_FATAL(json_diff("{\"a/b\":1,\"\u00e9t\u00e9\":1}",
					"{\"a/b\":2,\"\u00e9t\u00e9\":2}"), 2);
	CU_ASSERT_EQUAL(diff_place(find("/a~1b"), place, 4), 2);	/* not "/a~" */
	CU_ASSERT_STRING_EQUAL(place, "/a");
	CU_ASSERT_EQUAL(diff_place(find("/a~1b"), place, 5), 4);
	CU_ASSERT_STRING_EQUAL(place, "/a~1");
	CU_ASSERT_EQUAL(diff_place(find("/\xc3\xa9t\xc3\xa9"), place, 3), 1);	/* not half of é */
	CU_ASSERT_STRING_EQUAL(place, "/");
	CU_ASSERT_EQUAL(diff_place(find("/\xc3\xa9t\xc3\xa9"), place, 5), 4);
	CU_ASSERT_STRING_EQUAL(place, "/\xc3\xa9t");
}

static void test_reuse(void)
{
	/* Many comparisons on one result, with big and small bodies: the
	 * arenas rewind and nothing leaks (ASan checks). */
	size_t n = 1 << 20;
	char *a = malloc(n), *b = malloc(n);
	memset(a, 'a', n);
	memset(b, 'a', n);
	for (size_t i = 0; i < n; i += 4096)
		b[i] = ' ';
	for (int round = 0; round < 20; round++) {
		struct resp m, s;
		resp_init(&m, 200, a, round % 2 ? n : 100);
		resp_init(&s, 200, b, round % 2 ? n : 100);
		run(NULL, &m, &s);
		CU_ASSERT_EQUAL(diff_count(R), 1);
		CU_ASSERT_EQUAL(json_diff("{\"a\":[1,2,3]}", "{\"a\":[1,2,4]}"), 1);
	}
	free(a);
	free(b);
}

/* Regression (fuzz_diff, seed json_nul_key): a member name holding \u0000
 * put a NUL inside the pointer, which then read "/a", another member. */
static void test_pointer_with_nul_key(void)
{
	const char *m = "{\"a\\u0000b\":1,\"a\":1}", *s = "{\"a\\u0000b\":2,\"a\":1}";
	struct diff_header h = { "Content-Type", 12, "application/json", 16 };
	struct diff_response M = { .status = 200, .headers = &h, .nheaders = 1,
				   .body = (const uint8_t *)m, .body_len = strlen(m), .body_total = strlen(m) };
	struct diff_response S = M;
	S.body = (const uint8_t *)s;
	S.body_len = S.body_total = strlen(s);
	struct diff_options o = { 0 };
	struct diff_result *r = diff_result_new();
	CU_ASSERT_EQUAL_FATAL(diff_compare(&o, &M, &S, r), 1);
	const struct diff_item *it = diff_get(r, 0);
	CU_ASSERT_EQUAL(it->where_len, 4);
	CU_ASSERT(memcmp(it->where, "/a\0b", 4) == 0);
	/* Noise against a reference differing at "/a" only: not the same place. */
	struct diff_result *ref = diff_result_new();
	const char *rs = "{\"a\\u0000b\":1,\"a\":3}";
	struct diff_response Ref = M;
	Ref.body = (const uint8_t *)rs;
	Ref.body_len = Ref.body_total = strlen(rs);
	diff_compare(&o, &M, &Ref, ref);
	diff_mark_noise(r, ref);
	CU_ASSERT_FALSE(diff_get(r, 0)->noise);
	diff_result_free(ref);
	diff_result_free(r);
}

int main(void)
{
	static const struct {
		const char *name;
		CU_TestFunc fn;
	} tests[] = {
		{ "json whitespace", test_json_whitespace },
		{ "json key order", test_json_key_order },
		{ "json value change", test_json_value_change },
		{ "json nested arrays", test_json_nested_arrays },
		{ "json type change", test_json_type_change },
		{ "json added/removed", test_json_added_removed },
		{ "json array alignment", test_json_array_alignment },
		{ "json pointer escaping", test_json_pointer_escaping },
		{ "json numbers", test_json_numbers },
		{ "json strings", test_json_strings },
		{ "json ignore", test_json_ignore },
		{ "json invalid -> bytes", test_json_invalid_falls_back },
		{ "json random reformat", test_json_random_reformat },
		{ "json confined == full", test_json_confined_equals_full },
		{ "gzip vs identity", test_gzip_identity },
		{ "deflate zlib/raw", test_deflate },
		{ "decode failures", test_decode_failures },
		{ "binary bodies", test_binary },
		{ "token ranges", test_token_ranges },
		{ "excerpt utf-8", test_excerpt_utf8 },
		{ "token ranges random", test_token_ranges_random },
		{ "large text fallback", test_large_text_fallback },
		{ "truncated captures", test_truncated },
		{ "status", test_status },
		{ "headers", test_headers },
		{ "json content types", test_json_type_detection },
		{ "errors", test_errors },
		{ "noise json", test_noise_json },
		{ "noise headers/status/errors", test_noise_headers_status_errors },
		{ "noise ranges", test_noise_ranges },
		{ "max items", test_max_items },
		{ "place", test_place },
		{ "result reuse", test_reuse },
		{ "pointer with a NUL in a key", test_pointer_with_nul_key },
	};

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	CU_pSuite suite = CU_add_suite("diff", NULL, NULL);
	if (!suite)
		goto fail;
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		if (!CU_add_test(suite, tests[i].name, tests[i].fn))
			goto fail;
	R = diff_result_new();
	if (!R)
		goto fail;
	CU_basic_set_mode(CU_BRM_VERBOSE);
	if (CU_basic_run_tests() != CUE_SUCCESS)
		goto fail;
	unsigned failures = CU_get_number_of_failures();
	diff_result_free(R);
	CU_cleanup_registry();
	return failures != 0;
fail:
	fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
	CU_cleanup_registry();
	return 2;
}
