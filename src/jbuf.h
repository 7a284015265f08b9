#ifndef KAGE_JBUF_H
#define KAGE_JBUF_H
/*
 * jbuf: a growable byte buffer with JSON writers, for the diff log, /stats
 * and /metrics. Off the request path (comparator and admin only). Strings
 * are escaped so the output is always valid JSON whatever the input bytes:
 * valid UTF-8 passes through, control characters become \uXXXX, and bytes
 * that are not UTF-8 become \u00XX (their Latin-1 reading), so nothing is
 * silently lost.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jbuf {
	char *p;
	size_t len, cap;
	bool oom;		/* an append failed: the content is incomplete */
};

void jb_init(struct jbuf *b);
void jb_free(struct jbuf *b);
void jb_reset(struct jbuf *b);

void jb_raw(struct jbuf *b, const char *s, size_t n);
void jb_lit(struct jbuf *b, const char *s);		/* a literal C string, as is */
void jb_printf(struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string: quotes included. */
void jb_str(struct jbuf *b, const char *s, size_t n);
void jb_cstr(struct jbuf *b, const char *s);
/* A JSON string, or null when s is NULL. */
void jb_str_or_null(struct jbuf *b, const char *s, size_t n);
/* A JSON string holding base64 of the bytes. */
void jb_base64(struct jbuf *b, const uint8_t *s, size_t n);

#endif
