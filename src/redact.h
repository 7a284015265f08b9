#ifndef KAGE_REDACT_H
#define KAGE_REDACT_H
/*
 * redact: sensitive header values never appear in any output (diff log,
 * /stats, the dashboard). They are replaced by "redacted:" and 16 hex
 * digits of SipHash-2-4 under a key drawn at startup: equal values show
 * equal hashes within one run (so a difference is still visible), and
 * without the key the hash reveals nothing, short secrets included.
 *
 * Always redacted: Authorization, Cookie, Set-Cookie, Proxy-Authorization;
 * plus every --redact-header name.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kage_config;

#define REDACTED_LEN 25		/* "redacted:" + 16 hex digits */

void redact_init(const struct kage_config *cfg);
bool redact_header(const char *name, size_t len);
/* Writes REDACTED_LEN bytes (no NUL). */
void redact_value(const char *value, size_t len, char out[REDACTED_LEN]);
uint64_t siphash24(const uint8_t key[16], const void *data, size_t len);

#endif
