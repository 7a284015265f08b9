/*
 * server: see server.h.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin.h"
#include "comparator.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "plugin.h"
#include "redact.h"
#include "shard.h"
#include "uring.h"
#include "util.h"

struct server {
	const struct kage_config *cfg;
	struct shard *shards;
	unsigned nshards;
	struct comparator cmp;
	struct plugin plugin;
	struct admin *admin;		/* --admin; served by the comparator thread */
	int diff_fd;
	int access_fd;
	uint16_t port;			/* the listening port (chosen by the kernel for :0) */
	_Atomic bool draining;
	_Atomic bool force;
	pthread_mutex_t lock;		/* startup handshake only */
	pthread_cond_t cond;
	unsigned ready, failed;
};

const struct kage_config *server_config(struct server *srv)
{
	return srv->cfg;
}

int server_access_fd(struct server *srv)
{
	return srv->access_fd;
}

struct comparator *server_comparator(struct server *srv)
{
	return &srv->cmp;
}

const struct plugin *server_plugin(struct server *srv)
{
	return srv->plugin.hooks ? &srv->plugin : NULL;
}

bool server_draining(struct server *srv)
{
	return atomic_load_explicit(&srv->draining, memory_order_acquire);
}

bool server_force_stop(struct server *srv)
{
	return atomic_load_explicit(&srv->force, memory_order_acquire);
}

void server_shard_ready(struct server *srv, struct shard *sh, bool ok)
{
	pthread_mutex_lock(&srv->lock);
	if (ok)
		srv->ready++;
	else
		srv->failed++;
	pthread_cond_signal(&srv->cond);
	pthread_mutex_unlock(&srv->lock);
}

/* --- listeners ---------------------------------------------------------------- */

static uint16_t port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

/*
 * One listener per shard on the same address (SO_REUSEPORT); the kernel
 * spreads connections over them. TCP_NODELAY on the listener is inherited
 * by every accepted socket, so no per-connection setsockopt is needed.
 */
static int open_listener(const struct cfg_addr *addr, struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)ss, len) < 0 || listen(fd, SOMAXCONN) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static int open_listeners(struct server *srv, int *fds)
{
	const struct kage_config *cfg = srv->cfg;
	struct sockaddr_storage ss = cfg->listen.ss;
	for (unsigned i = 0; i < srv->nshards; i++) {
		int fd = open_listener(&cfg->listen, &ss, cfg->listen.len);
		if (fd < 0) {
			log_error("--listen %s: %s", cfg->listen.text, strerror(-fd));
			return -1;
		}
		fds[i] = fd;
		if (i == 0 && port_of(&ss) == 0) {
			/* Port 0: the first listener picks, the others follow. */
			struct sockaddr_storage got;
			socklen_t len = sizeof got;
			getsockname(fd, (struct sockaddr *)&got, &len);
			set_port(&ss, port_of(&got));
		}
	}
	srv->port = port_of(&ss);
	return 0;
}

static void announce(struct server *srv)
{
	char host[80];
	snprintf(host, sizeof host, "%s", srv->cfg->listen.text);
	char *colon = strrchr(host, ':');
	if (colon)
		*colon = 0;
	log_info("listening on %s:%u (%u shard%s)", host, srv->port, srv->nshards,
		 srv->nshards == 1 ? "" : "s");
}

/* --- logs --------------------------------------------------------------------- */

static int open_log(const char *path, int std_fd)
{
	if (strcmp(path, "-") == 0)
		return fcntl(std_fd, F_DUPFD_CLOEXEC, 3);
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

/*
 * SIGHUP: open the file again and put it under the same descriptor number
 * with dup2, atomically: writers keep using their number and never see a
 * closed or reused descriptor (logrotate's "move, then HUP").
 */
static void reopen_log(const char *path, int fd, const char *what)
{
	if (!path || strcmp(path, "-") == 0 || fd < 0)
		return;
	int nfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (nfd < 0) {
		log_warn("%s %s: cannot reopen: %s", what, path, strerror(errno));
		return;
	}
	if (dup3(nfd, fd, O_CLOEXEC) < 0)
		log_warn("%s %s: cannot reopen: %s", what, path, strerror(errno));
	close(nfd);
}

static int open_logs(struct server *srv)
{
	const struct kage_config *cfg = srv->cfg;
	srv->diff_fd = open_log(cfg->diff_log, STDOUT_FILENO);
	if (srv->diff_fd < 0) {
		log_error("--diff-log %s: %s", cfg->diff_log, strerror(errno));
		return -1;
	}
	srv->access_fd = -1;
	if (cfg->access_log) {
		srv->access_fd = open_log(cfg->access_log, STDERR_FILENO);
		if (srv->access_fd < 0) {
			log_error("--access-log %s: %s", cfg->access_log, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* --- run ------------------------------------------------------------------------ */

static void wake_all(struct server *srv)
{
	for (unsigned i = 0; i < srv->nshards; i++)
		if (srv->shards[i].started)
			shard_wake(&srv->shards[i]);
}

static bool wait_ready(struct server *srv)
{
	pthread_mutex_lock(&srv->lock);
	while (srv->ready + srv->failed < srv->nshards)
		pthread_cond_wait(&srv->cond, &srv->lock);
	bool ok = srv->failed == 0;
	pthread_mutex_unlock(&srv->lock);
	return ok;
}

static bool shards_running(struct server *srv)
{
	for (unsigned i = 0; i < srv->nshards; i++)
		if (srv->shards[i].started && !atomic_load_explicit(&srv->shards[i].exited,
								    memory_order_acquire))
			return true;
	return false;
}

/* Signals are taken synchronously by this thread; shards never see them. */
static void serve_signals(struct server *srv, const sigset_t *set)
{
	struct timespec tick = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };
	for (;;) {
		int sig = sigtimedwait(set, NULL, server_draining(srv) ? &tick : NULL);
		if (sig == SIGHUP) {
			log_info("SIGHUP: reopening log files");
			reopen_log(srv->cfg->diff_log, srv->diff_fd, "--diff-log");
			reopen_log(srv->cfg->access_log, srv->access_fd, "--access-log");
		} else if (sig == SIGTERM || sig == SIGINT) {
			if (!server_draining(srv)) {
				log_info("%s: draining (up to %.1f s)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
					 srv->cfg->drain_timeout);
				atomic_store_explicit(&srv->draining, true, memory_order_release);
				comparator_set_deadline(&srv->cmp, now_ns() +
								   sec_to_ns(srv->cfg->drain_timeout));
			} else {
				log_info("second signal: stopping now");
				atomic_store_explicit(&srv->force, true, memory_order_release);
				comparator_set_deadline(&srv->cmp, now_ns());
			}
			wake_all(srv);
		}
		if (server_draining(srv) && !shards_running(srv))
			return;
	}
}

/* One counter summed over the shards (relaxed reads: they have stopped). */
static uint64_t sum_counter(struct server *srv, size_t offset)
{
	uint64_t sum = 0;
	for (unsigned i = 0; i < srv->nshards; i++)
		sum += atomic_load_explicit((counter_t *)(void *)((char *)&srv->shards[i].ctr + offset),
					    memory_order_relaxed);
	return sum;
}

static void summary(struct server *srv)
{
	uint64_t requests = 0, zc = 0, copied = 0, dropped = 0;
	for (unsigned i = 0; i < srv->nshards; i++) {
		struct shard_counters *c = &srv->shards[i].ctr;
		requests += CTR_GET(c, requests);
		dropped += CTR_GET(c, records_dropped);
		zc += CTR_GET(c, body_bytes_zerocopy);
		copied += CTR_GET(c, body_bytes_copied);
	}
	struct comparator_counters *cc = &srv->cmp.ctr;
	dropped += atomic_load(&cc->abandoned);
	log_info("served %llu requests; %llu shadowed records compared (%llu matched, %llu "
		 "mismatched), %llu dropped, %llu lost by the diff log",
		 (unsigned long long)requests,
		 (unsigned long long)atomic_load(&cc->records), (unsigned long long)atomic_load(&cc->matched),
		 (unsigned long long)atomic_load(&cc->mismatched),
		 (unsigned long long)dropped, (unsigned long long)atomic_load(&cc->lost));
	if (srv->cfg->nbackends > 1) {
		char line[512];
		int n = snprintf(line, sizeof line, "shadows: %llu sent; skipped:",
				 (unsigned long long)sum_counter(srv, offsetof(struct shard_counters, shadow_sent)));
		for (int r = 0; r < SKIP_REASONS && n < (int)sizeof line; r++)
			n += snprintf(line + n, sizeof line - (size_t)n, " %s=%llu", shadow_reason_name(r),
				      (unsigned long long)sum_counter(srv, offsetof(struct shard_counters,
										  shadow_skipped[r])));
		log_info("%s", line);
	}
	if (srv->plugin.hooks)
		log_info("hooks: %llu errors, %llu answers refused",
			 (unsigned long long)sum_counter(srv, offsetof(struct shard_counters, plugin_errors)),
			 (unsigned long long)sum_counter(srv, offsetof(struct shard_counters, plugin_rejected)));
	log_debug("zero-copy: %llu master body bytes sent from their receive buffers, %llu copied",
		  (unsigned long long)zc, (unsigned long long)copied);
	if (srv->cfg->send_zc)
		log_info("--send-zc: %llu SEND_ZC sends, %llu of them copied by the kernel anyway",
			 (unsigned long long)sum_counter(srv, offsetof(struct shard_counters, zc_sends)),
			 (unsigned long long)sum_counter(srv, offsetof(struct shard_counters, zc_kernel_copied)));
	comparator_summary(&srv->cmp, stderr);
}

int server_run(const struct kage_config *cfg, const struct kage_hooks *hooks)
{
	log_level = cfg->log_level;
	char why[512];
	if (uring_check(why, sizeof why) < 0) {
		log_error("%s", why);
		return 1;
	}
	struct server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return 1;
	srv->cfg = cfg;
	srv->nshards = cfg->threads;
	srv->diff_fd = srv->access_fd = -1;
	srv->cmp.wake_fd = -1;
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->cond, NULL);
	redact_init(cfg);

	int status = 2;
	int *lfds = calloc(srv->nshards, sizeof *lfds);
	srv->shards = aligned_alloc(CACHELINE, (sizeof(struct shard) * srv->nshards + CACHELINE - 1) &
						       ~(size_t)(CACHELINE - 1));
	if (!lfds || !srv->shards)
		goto out;
	memset(srv->shards, 0, sizeof(struct shard) * srv->nshards);
	for (unsigned i = 0; i < srv->nshards; i++)
		lfds[i] = -1;
	if (open_listeners(srv, lfds) < 0 || open_logs(srv) < 0)
		goto out;
	/* Bound here, with the other listeners: a port in use is exit 2. */
	if (cfg->admin_enabled && !(srv->admin = admin_open(&cfg->admin, metrics_route, &srv->cmp)))
		goto out;
	char perr[512];
	if (plugin_load(&srv->plugin, cfg, hooks, perr, sizeof perr) < 0) {
		log_error("%s", perr);
		goto out;
	}

	status = 1;
	if (comparator_init(&srv->cmp, cfg, srv->shards, srv->nshards, srv->diff_fd,
			    server_plugin(srv)) < 0) {
		log_error("comparator: out of memory");
		goto out;
	}
	if (srv->admin)
		comparator_serve_admin(&srv->cmp, srv->admin, srv);
	for (unsigned i = 0; i < srv->nshards; i++) {
		int err = shard_init(&srv->shards[i], srv, i, lfds[i]);
		lfds[i] = -1;	/* the shard owns it now */
		if (err < 0) {
			log_error("shard %u: %s", i, strerror(-err));
			goto out;
		}
	}

	/* Block the signals before any thread exists: they all inherit the mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (comparator_start(&srv->cmp) < 0)
		goto out;
	for (unsigned i = 0; i < srv->nshards; i++)
		if (shard_start(&srv->shards[i]) < 0)
			goto out_stop;
	if (!wait_ready(srv))
		goto out_stop;
	/* Only now: scripts wait for this line before sending traffic. */
	announce(srv);
	serve_signals(srv, &set);
	status = 0;

out_stop:
	atomic_store_explicit(&srv->draining, true, memory_order_release);
	atomic_store_explicit(&srv->force, status != 0, memory_order_release);
	if (status != 0)
		comparator_set_deadline(&srv->cmp, now_ns());
	wake_all(srv);
	for (unsigned i = 0; i < srv->nshards; i++)
		shard_join(&srv->shards[i]);
	comparator_finish(&srv->cmp);
	if (status == 0)
		summary(srv);
out:
	for (unsigned i = 0; srv->shards && i < srv->nshards; i++) {
		if (lfds && lfds[i] >= 0)
			close(lfds[i]);
		if (srv->shards[i].cfg)
			shard_destroy(&srv->shards[i]);
	}
	comparator_destroy(&srv->cmp);
	plugin_unload(&srv->plugin);
	admin_close(srv->admin);
	if (srv->diff_fd >= 0)
		close(srv->diff_fd);
	if (srv->access_fd >= 0)
		close(srv->access_fd);
	free(lfds);
	free(srv->shards);
	pthread_mutex_destroy(&srv->lock);
	pthread_cond_destroy(&srv->cond);
	free(srv);
	return status;
}
