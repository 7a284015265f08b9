/*
 * endpoint: "GET /users/7?full=1" -> "GET /users/:id" (contract in
 * endpoint.h). One pass over the target, no allocation.
 */
#include "endpoint.h"

#include <stdbool.h>
#include <string.h>

static bool is_hex(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

static bool seg_is_decimal(const char *s, size_t n)
{
	if (!n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* 8-4-4-4-12 hex digits, any case. */
static bool seg_is_uuid(const char *s, size_t n)
{
	if (n != 36)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !is_hex(s[i]))
			return false;
	}
	return true;
}

static bool seg_is_hex_id(const char *s, size_t n)
{
	if (n < 16)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_hex(s[i]))
			return false;
	return true;
}

static bool seg_is_id(const char *s, size_t n)
{
	return seg_is_decimal(s, n) || seg_is_uuid(s, n) || seg_is_hex_id(s, n);
}

/* The path part of a request target: [*start, *end). */
static void target_path(const char *t, size_t n, size_t *start, size_t *end)
{
	size_t i = 0, e;

	/* absolute-form: scheme "://" authority, then the path */
	if (n && t[0] != '/') {
		const char *sep = memchr(t, '/', n);
		if (sep && (size_t)(sep - t) >= 2 && sep[-1] == ':' && (size_t)(sep - t) + 1 < n &&
		    sep[1] == '/') {
			i = (size_t)(sep - t) + 2;
			while (i < n && t[i] != '/' && t[i] != '?' && t[i] != '#')
				i++;
		}
	}
	e = i;
	while (e < n && t[e] != '?' && t[e] != '#')
		e++;
	*start = i;
	*end = e;
}

/* Append s[0..n) when it fits in cap-1; false (nothing written) when not. */
static bool put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
	if (*len + n + 1 > cap)
		return false;
	memcpy(out + *len, s, n);
	*len += n;
	return true;
}

size_t endpoint_of(const char *method, size_t method_len, const char *target, size_t target_len,
		   char *out, size_t cap)
{
	size_t len = 0, ps, pe;

	if (!cap)
		return 0;
	if (!put(out, cap, &len, method, method_len) || !put(out, cap, &len, " ", 1))
		goto done;
	target_path(target, target_len, &ps, &pe);
	/* No path (absolute-form "http://h", or nothing at all) means "/";
	 * the authority-form and "*" keep what they are. */
	if (ps == pe) {
		put(out, cap, &len, "/", 1);
		goto done;
	}
	if (target[ps] != '/') {
		put(out, cap, &len, target + ps, pe - ps);
		goto done;
	}
	for (size_t i = ps; i < pe;) {
		size_t s = i + 1, e = s;
		while (e < pe && target[e] != '/')
			e++;
		bool id = seg_is_id(target + s, e - s);
		size_t before = len;
		if (!put(out, cap, &len, "/", 1) ||
		    !put(out, cap, &len, id ? ":id" : target + s, id ? 3 : e - s)) {
			len = before;
			break;
		}
		i = e;
	}
done:
	out[len] = '\0';
	return len;
}
