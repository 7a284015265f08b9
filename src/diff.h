#ifndef KAGE_DIFF_H
#define KAGE_DIFF_H
/*
 * diff: the comparison engine. Pure: two captured responses in, a list of
 * differences out. It knows nothing of sockets, rings, shards or records,
 * and runs on the comparator thread only.
 *
 * What it promises (SPEC section 5):
 * - Framing never counts. Content-Length, Transfer-Encoding, Content-Encoding,
 *   Date and the hop-by-hop headers (Connection, Keep-Alive,
 *   Proxy-Connection, TE, Trailer, Upgrade) are never compared; neither are
 *   the names in diff_options.ignore_headers. Header names compare without
 *   case; repeated headers are compared as their values joined by ", " in
 *   order.
 * - Bodies are compared after undoing gzip/deflate (each side per its own
 *   Content-Encoding). Chunked framing is already undone by the capture.
 * - JSON bodies (application/json or any +json type, parameters ignored, on
 *   both sides, and both parse) compare structurally: key order and
 *   whitespace never count, numbers compare by value, string escapes are
 *   decoded. Each difference has a JSON Pointer (RFC 6901, ~0 ~1 escaping)
 *   in `where`; an added or removed member or element has the absent side
 *   NULL (the text "null" means a present null). Pointers matching an
 *   ignore_json pattern (`*` = any one segment), or below one, are skipped.
 *   Arrays of different lengths are aligned (a bounded LCS on element
 *   hashes), so one inserted element is one CHANGE_ADDED item, not a change
 *   at every later index; elements compared or removed are named by their
 *   master index, added ones by their shadow index. Equal lengths compare
 *   index by index.
 * - Other bodies: the byte ranges where the decoded bodies differ, aligned
 *   to tokens (runs of letters, digits and `+/=._:-`), as one DIFF_BODY item
 *   whose `offset` is the first differing byte of the first range that is
 *   not noise (or of the first range when all are noise); master/shadow hold
 *   short excerpts around it (moved with the offset by diff_mark_noise).
 *   Past the work bound (edit distance 1024 tokens, 4 MiB of differing
 *   middle) the ranges collapse to one, from the first to the last
 *   differing byte.
 * - A body whose Content-Encoding cannot be undone (unknown coding, corrupt
 *   stream, inflated size over max_decoded) is compared as received.
 * - A truncated capture (body_len < body_total) is compared by total length
 *   and CRC of the whole body; when those differ the item locates the first
 *   difference inside the captured prefixes if there is one.
 * - A failed backend (error != NULL) yields one DIFF_ERROR item, and nothing
 *   else is compared for that pair.
 *
 * Memory: a diff_result owns an arena reused across comparisons
 * (diff_result_reset keeps its capacity), so steady state allocates
 * nothing: JSON is read by diff.c's own reader into that arena (jansson
 * costs ~100 us per 4 KiB document, twenty times the comparator's budget).
 * Running out of memory aborts the process.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct diff_header {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};

/* One backend's response as captured by a shard. */
struct diff_response {
	int status;			/* HTTP status; 0 when the backend failed */
	const char *error;		/* NULL, or "connect", "timeout", "reset", "malformed", "dropped" */
	const struct diff_header *headers;
	size_t nheaders;
	const uint8_t *body;		/* captured bytes: chunking undone, content-coding not */
	size_t body_len;
	uint64_t body_total;		/* length of the whole body (chunking undone) */
	uint32_t body_crc;		/* zlib crc32 of the whole body */
};

struct diff_options {
	const char *const *ignore_headers;	/* extra names, any case */
	size_t nignore_headers;
	const char *const *ignore_json;		/* JSON Pointers; '*' = any one segment */
	size_t nignore_json;
	size_t max_items;			/* per comparison; 0 means 64 */
	size_t excerpt_max;			/* bytes per side in byte-diff excerpts; 0 means 48 */
	size_t max_decoded;			/* cap on inflated body size; 0 means 16 MiB */
};

enum diff_kind {
	DIFF_STATUS = 0,
	DIFF_HEADER,
	DIFF_BODY,
	DIFF_ERROR,
};

/* How a JSON value changed (DIFF_BODY on JSON bodies; CHANGE_VALUE otherwise). */
enum diff_change {
	CHANGE_VALUE = 0,	/* same type, other value (or any non-JSON difference) */
	CHANGE_TYPE,		/* e.g. number -> string */
	CHANGE_ADDED,		/* present in the shadow only: master == NULL */
	CHANGE_REMOVED,		/* present in master only: shadow == NULL */
};

enum diff_where {
	WHERE_NONE = 0,		/* status and error diffs: `where` is null */
	WHERE_TEXT,		/* header name (lowercase) or JSON Pointer */
	WHERE_OFFSET,		/* non-JSON body: first differing byte offset */
};

/*
 * A byte range [start, end) of the decoded master body (non-JSON bodies),
 * and the range it became in the shadow's. start == end is a pure insertion
 * in the shadow at that point; it overlaps the ranges that contain or touch
 * it.
 */
struct diff_range {
	uint64_t start, end;
	uint64_t shadow_start, shadow_end;
	bool noise;
};

struct diff_item {
	enum diff_kind kind;
	enum diff_change change;
	enum diff_where where_type;
	const char *where;		/* WHERE_TEXT: NUL-terminated, but a JSON member
					 * name may hold a NUL itself: use where_len */
	size_t where_len;
	uint64_t offset;		/* WHERE_OFFSET */
	/* The two values as text (JSON text for JSON values, the header value,
	 * an excerpt, a status code, an error name); NULL = absent side. Not
	 * NUL-terminated in general: use the lengths. May hold any bytes. */
	const char *master;
	size_t master_len;
	const char *shadow;
	size_t shadow_len;
	/* Non-JSON body diffs: every differing range, in order. */
	const struct diff_range *ranges;
	size_t nranges;
	const char *place;		/* what diff_place() returns; NUL-terminated */
	bool noise;			/* set by diff_mark_noise() */
};

struct diff_result;

struct diff_result *diff_result_new(void);
void diff_result_reset(struct diff_result *r);
void diff_result_free(struct diff_result *r);

size_t diff_count(const struct diff_result *r);
const struct diff_item *diff_get(const struct diff_result *r, size_t i);
/* True when some item was dropped because max_items was reached. */
bool diff_truncated(const struct diff_result *r);

/*
 * Compare `shadow` against `master`, appending items to `out` (reset it
 * first for a fresh comparison). Returns the number of items appended.
 */
size_t diff_compare(const struct diff_options *opt, const struct diff_response *master,
		    const struct diff_response *shadow, struct diff_result *out);

/*
 * Noise cancellation with a reference backend (SPEC section 5): an item of
 * `shadow` is noise when `reference` (reference vs master, same request)
 * has an item of the same kind at the same place or an ancestor of it
 * (JSON), the same header, an overlapping byte range (other bodies; the
 * item is noise when all its ranges are, and its offset moves to the first
 * range that is not), or also a status difference. Errors are never noise.
 */
void diff_mark_noise(struct diff_result *shadow, const struct diff_result *reference);

/* Mark every item noise, errors included (the reference's own differences). */
void diff_mark_all_noise(struct diff_result *r);

/* True when every item is noise (or there are none). Errors are never noise
 * unless diff_mark_all_noise() marked them. */
bool diff_matches(const struct diff_result *r);

/*
 * The item's place for statistics: the JSON Pointer with array indexes
 * replaced by `*`, the header name, "status", "error", or "body" for byte
 * diffs. Writes a NUL-terminated string of at most cap-1 bytes, returns
 * its length; a place cut to fit ends before the escape or UTF-8 sequence
 * that did not fit, so it stays a valid pointer.
 */
size_t diff_place(const struct diff_item *it, char *out, size_t cap);

/* "application/json", "application/problem+json; charset=utf-8", ... */
bool diff_is_json_type(const char *ct, size_t len);

#endif
