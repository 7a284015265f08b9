#ifndef KAGE_ENDPOINT_H
#define KAGE_ENDPOINT_H
/*
 * endpoint: groups requests for statistics. "GET /users/7?full=1" becomes
 * "GET /users/:id": path segments that are decimal numbers, UUIDs, or hex
 * ids of 16 or more digits become ":id"; the query and fragment are
 * dropped; an absolute-form target ("http://host/p") keeps only its path.
 * Pure and allocation-free.
 */
#include <stddef.h>

/*
 * Write "METHOD /templated/path" into out (NUL-terminated, at most cap-1
 * bytes, cut at a segment boundary when too long) and return its length.
 */
size_t endpoint_of(const char *method, size_t method_len, const char *target, size_t target_len,
		   char *out, size_t cap);

#endif
