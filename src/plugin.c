/*
 * plugin: see plugin.h.
 */
#include "plugin.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "head.h"
#include "pool.h"
#include "log.h"
#include "util.h"

int plugin_load(struct plugin *p, const struct kage_config *cfg, const struct kage_hooks *inproc,
		char *err, size_t errlen)
{
	memset(p, 0, sizeof *p);
	const struct kage_hooks *h = inproc;
	if (inproc && cfg->plugin_path) {
		snprintf(err, errlen, "--plugin: this program brings its own hooks; no plugin can be loaded");
		return -1;
	}
	if (!h && cfg->plugin_path) {
		/* RTLD_NOW: a plugin missing a symbol fails here, not mid-request. */
		p->dl = dlopen(cfg->plugin_path, RTLD_NOW | RTLD_LOCAL);
		if (!p->dl) {
			snprintf(err, errlen, "--plugin %s: %s", cfg->plugin_path, dlerror());
			return -1;
		}
		kage_plugin_fn entry = (kage_plugin_fn)dlsym(p->dl, KAGE_PLUGIN_SYMBOL);
		if (!entry) {
			snprintf(err, errlen, "--plugin %s: no %s() entry point", cfg->plugin_path,
				 KAGE_PLUGIN_SYMBOL);
			plugin_unload(p);
			return -1;
		}
		h = entry();
		if (!h) {
			snprintf(err, errlen, "--plugin %s: %s() returned no hooks", cfg->plugin_path,
				 KAGE_PLUGIN_SYMBOL);
			plugin_unload(p);
			return -1;
		}
	}
	if (!h)
		return 0;
	if (h->abi != KAGE_ABI_VERSION) {
		snprintf(err, errlen, "%s%s: built for kage ABI %u, this kage speaks ABI %u; rebuild it against this kage.h",
			 cfg->plugin_path ? "--plugin " : "hooks", cfg->plugin_path ? cfg->plugin_path : "",
			 h->abi, (unsigned)KAGE_ABI_VERSION);
		plugin_unload(p);
		return -1;
	}
	for (unsigned i = 0; i < cfg->nbackends; i++)
		p->names[i] = cfg->backends[i].name;
	p->info = (struct kage_info){
		.abi = KAGE_ABI_VERSION,
		.version = KAGE_VERSION,
		.nbackends = cfg->nbackends,
		.backends = p->names,
		.threads = cfg->threads,
	};
	p->hooks = h;
	if (h->init) {
		p->state = h->init(cfg->plugin_arg, &p->info);
		if (p->state == KAGE_INIT_FAILED) {
			snprintf(err, errlen, "%s%s: init failed", cfg->plugin_path ? "--plugin " : "hooks ",
				 cfg->plugin_path ? cfg->plugin_path : (h->name ? h->name : ""));
			p->hooks = NULL;
			p->state = NULL;
			plugin_unload(p);
			return -1;
		}
	}
	log_info("hooks %s loaded:%s%s%s", h->name ? h->name : (cfg->plugin_path ? cfg->plugin_path : "(program)"),
		 h->select_backends ? " select_backends" : "", h->munge_headers ? " munge_headers" : "",
		 h->backends_finished ? " backends_finished" : "");
	return 0;
}

void plugin_unload(struct plugin *p)
{
	if (p->hooks && p->hooks->fini)
		p->hooks->fini(p->state);
	p->hooks = NULL;
	if (p->dl)
		dlclose(p->dl);
	p->dl = NULL;
}

void plugin_request_view(struct kage_request *req, struct kage_header *hdr, const struct http_msg *m,
			 const char *session, const char *client, const void *body, size_t body_len)
{
	for (unsigned i = 0; i < m->nhdr; i++) {
		hdr[i].name = msg_str(m, m->hdr[i].name);
		hdr[i].name_len = m->hdr[i].name_len;
		hdr[i].value = msg_str(m, m->hdr[i].value);
		hdr[i].value_len = m->hdr[i].value_len;
	}
	*req = (struct kage_request){
		.method = http_method_name(m->method),
		.target = msg_str(m, m->target),
		.target_len = m->target_len,
		.version_minor = m->minor,
		.headers = hdr,
		.nheaders = m->nhdr,
		.body = body,
		.body_len = body_len,
		.session = session,
		.client_addr = client,
	};
}

/* --- the editable header list ---------------------------------------------- */

void kh_reset(struct kage_headers *kh)
{
	kh->n = 0;
	kh->used = 0;
	kh->refused = 0;
}

void kh_push(struct kage_headers *kh, const char *name, size_t nlen, const char *value, size_t vlen)
{
	if (kh->n == KH_MAX_HEADERS)
		return;
	kh->h[kh->n++] = (struct kage_header){ name, nlen, value, vlen };
}

size_t kh_bytes(const struct kage_headers *kh)
{
	size_t n = 0;
	for (size_t i = 0; i < kh->n; i++)
		n += kh->h[i].name_len + kh->h[i].value_len + 4;
	return n;
}

static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Headers kage frames itself: a hook may not add, change or remove them. */
static bool framing_header(const char *name, size_t len)
{
	static const char *const owned[] = { "host", "content-length", "transfer-encoding",
					     "connection", "keep-alive", "proxy-connection",
					     "te", "trailer", "upgrade" };
	for (size_t i = 0; i < ARRAY_SIZE(owned); i++)
		if (span_is(name, len, owned[i]))
			return true;
	return false;
}

static bool valid_name(const char *name, size_t *len)
{
	if (!name)
		return false;
	size_t n = strlen(name);
	if (n == 0 || n > 256)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_tchar((unsigned char)name[i]))
			return false;
	*len = n;
	return !framing_header(name, n);
}

static bool valid_value(const char *value, size_t *len)
{
	if (!value)
		return false;
	size_t n = strlen(value);
	for (size_t i = 0; i < n; i++)
		if (value[i] == '\r' || value[i] == '\n')
			return false;
	*len = n;
	return n <= 16 * 1024;
}

static int refuse(struct kage_headers *kh)
{
	kh->refused++;
	return -1;
}

static const char *keep(struct kage_headers *kh, const char *s, size_t n)
{
	if (kh->used + n > KH_ARENA)
		return NULL;
	char *d = kh->arena + kh->used;
	memcpy(d, s, n);
	kh->used += n;
	return d;
}

static bool same_name(const struct kage_header *h, const char *name, size_t len)
{
	return h->name_len == len && ascii_casecmp(h->name, name, len) == 0;
}

int kage_headers_remove(struct kage_headers *kh, const char *name)
{
	size_t nlen;
	if (!valid_name(name, &nlen))
		return refuse(kh);
	size_t out = 0, removed = 0;
	for (size_t i = 0; i < kh->n; i++) {
		if (same_name(&kh->h[i], name, nlen))
			removed++;
		else
			kh->h[out++] = kh->h[i];
	}
	kh->n = out;
	return (int)removed;
}

int kage_headers_add(struct kage_headers *kh, const char *name, const char *value)
{
	size_t nlen, vlen;
	if (!valid_name(name, &nlen) || !valid_value(value, &vlen) || kh->n == KH_MAX_HEADERS)
		return refuse(kh);
	const char *n = keep(kh, name, nlen);
	const char *v = keep(kh, value, vlen);
	if (!n || (!v && vlen))
		return refuse(kh);
	kh->h[kh->n++] = (struct kage_header){ n, nlen, v ? v : "", vlen };
	return 0;
}

int kage_headers_set(struct kage_headers *kh, const char *name, const char *value)
{
	size_t nlen, vlen;
	if (!valid_name(name, &nlen) || !valid_value(value, &vlen))
		return refuse(kh);
	kage_headers_remove(kh, name);
	return kage_headers_add(kh, name, value);
}

const char *kage_headers_get(const struct kage_headers *kh, const char *name, size_t *len)
{
	size_t nlen = name ? strlen(name) : 0;
	for (size_t i = 0; i < kh->n; i++) {
		if (same_name(&kh->h[i], name, nlen)) {
			if (len)
				*len = kh->h[i].value_len;
			return kh->h[i].value;
		}
	}
	return NULL;
}

size_t kage_headers_count(const struct kage_headers *kh)
{
	return kh->n;
}

int kage_headers_at(const struct kage_headers *kh, size_t i, struct kage_header *out)
{
	if (i >= kh->n)
		return -1;
	*out = kh->h[i];
	return 0;
}

/* --- munge_headers ----------------------------------------------------------------- */

static void fill_list(struct kage_headers *kh, const struct http_msg *m, const struct head_request_opts *o)
{
	kh_reset(kh);
	if (m->host_count == 0 && o->rules)
		kh_push(kh, "Host", 4, o->rules->host, o->rules->host_len);
	for (unsigned i = 0; i < m->nhdr; i++) {
		const struct http_hdr *h = &m->hdr[i];
		if (head_passes_to_backend(m, h, o))
			kh_push(kh, msg_str(m, h->name), h->name_len, msg_str(m, h->value), h->value_len);
	}
	if (o->rules)
		for (unsigned i = 0; i < o->rules->n; i++) {
			const struct head_rule *r = &o->rules->rule[i];
			if (r->value)
				kh_push(kh, r->name, r->name_len, r->value, r->value_len);
		}
	if (o->client_addr && head_xff_size(m, o) <= KH_ARENA / 2) {
		char *v = kh->arena + kh->used;
		size_t n = head_xff_write(m, o, v);
		kh->used += n;
		kh_push(kh, "X-Forwarded-For", 15, v, n);
	}
	if (o->session)
		kh_push(kh, o->session_name, o->session_name_len, o->session, o->session_len);
}

int plugin_munge(const struct plugin *p, struct kage_headers *kh, unsigned backend,
		 const struct kage_request *req, const struct http_msg *m,
		 const struct head_request_opts *o, struct bytepool *pool, char **out, size_t *cap,
		 size_t *len)
{
	fill_list(kh, m, o);
	if (p->hooks->munge_headers(p->state, backend, req, kh) < 0)
		return -1;
	/* Request line, the list, then framing: at most Transfer-Encoding,
	 * Upgrade and Connection lines and the blank line. */
	size_t need = 32 + m->target_len + kh_bytes(kh) + 128;
	size_t ulen;
	if (m->upgrade && msg_header(m, HDR_UPGRADE, &ulen))
		need += ulen;
	char *buf = bytepool_get(pool, need, cap);
	if (!buf)
		return -2;
	char *w = buf + head_request_line(m, buf);
	for (size_t i = 0; i < kh->n; i++) {
		const struct kage_header *h = &kh->h[i];
		memcpy(w, h->name, h->name_len);
		w += h->name_len;
		*w++ = ':';
		*w++ = ' ';
		memcpy(w, h->value, h->value_len);
		w += h->value_len;
		*w++ = '\r';
		*w++ = '\n';
	}
	w += head_request_framing(m, o, w);
	*out = buf;
	*len = (size_t)(w - buf);
	return 0;
}
