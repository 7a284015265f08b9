#include "redact.h"

#include <string.h>
#include <sys/random.h>

#include "config.h"
#include "util.h"

static uint8_t key[16];
static const struct kage_config *config;

static const char *const always[] = { "authorization", "cookie", "set-cookie",
				      "proxy-authorization" };

void redact_init(const struct kage_config *cfg)
{
	config = cfg;
	if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key) {
		uint64_t t = (uint64_t)now_ns();
		memcpy(key, &t, sizeof t);
	}
}

bool redact_header(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(always); i++)
		if (span_is(name, len, always[i]))
			return true;
	if (!config)
		return false;
	for (unsigned i = 0; i < config->redact_headers.n; i++) {
		const char *r = config->redact_headers.v[i];
		if (strlen(r) == len && ascii_casecmp(r, name, len) == 0)
			return true;
	}
	return false;
}

void redact_value(const char *value, size_t len, char out[REDACTED_LEN])
{
	static const char hex[] = "0123456789abcdef";
	uint64_t h = siphash24(key, value, len);
	memcpy(out, "redacted:", 9);
	for (int i = 0; i < 16; i++)
		out[9 + i] = hex[(h >> (60 - 4 * i)) & 15];
}

/* SipHash-2-4 (Aumasson and Bernstein, 2012), written from the paper. */
static uint64_t rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

#define SIPROUND(v0, v1, v2, v3)                                                  \
	do {                                                                      \
		v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);          \
		v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                             \
		v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                             \
		v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);          \
	} while (0)

uint64_t siphash24(const uint8_t k[16], const void *data, size_t len)
{
	const uint8_t *in = data;
	uint64_t k0 = le64(k), k1 = le64(k + 8);
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
	uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
	uint64_t v3 = 0x7465646279746573ULL ^ k1;
	size_t full = len & ~(size_t)7;
	for (size_t i = 0; i < full; i += 8) {
		uint64_t m = le64(in + i);
		v3 ^= m;
		SIPROUND(v0, v1, v2, v3);
		SIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	uint64_t b = (uint64_t)len << 56;
	for (size_t i = 0; i < (len & 7); i++)
		b |= (uint64_t)in[full + i] << (8 * i);
	v3 ^= b;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	for (int i = 0; i < 4; i++)
		SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}
