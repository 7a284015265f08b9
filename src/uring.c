/*
 * uring: see uring.h. Written against liburing 2.3 (Debian 12) running on
 * much newer kernels, so the few things 2.3 lacks are filled in by hand,
 * each one commented where it happens.
 */
#include "uring.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_GROUPS 8

struct bufgroup {
	struct io_uring_buf_ring *br;	/* the ring the kernel takes buffers from */
	char *mem;			/* count * size bytes */
	unsigned count;
	unsigned size;
	unsigned mask;
	unsigned pending;		/* recycled, not yet published */
	bool active;
};

struct uring {
	struct io_uring ring;
	struct uring_info info;
	struct uring_stats stats;
	unsigned last_overflow;
	struct bufgroup groups[MAX_GROUPS];
};

/* --- setup ------------------------------------------------------------------ */

static int read_sysctl_int(const char *path, int *out)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	int ok = fscanf(f, "%d", out) == 1;
	fclose(f);
	return ok ? 0 : -1;
}

/* Turn a setup errno into the cause and the remedy, in one line. */
static void explain_setup_error(int err, char *why, size_t whylen)
{
	int disabled = 0;
	bool known = read_sysctl_int("/proc/sys/kernel/io_uring_disabled", &disabled) == 0;

	if (err == ENOSYS) {
		snprintf(why, whylen,
			 "io_uring is not available (io_uring_setup: ENOSYS): the kernel lacks it or a "
			 "seccomp filter hides it; run on Linux 6.1 or newer without such a filter "
			 "(containers: allow io_uring_setup/enter/register in the seccomp profile)");
	} else if (err == EPERM && known && disabled == 2) {
		snprintf(why, whylen,
			 "io_uring is disabled by sysctl kernel.io_uring_disabled=2; "
			 "enable it with: sysctl -w kernel.io_uring_disabled=0");
	} else if (err == EPERM && known && disabled == 1) {
		int gid = -1;
		read_sysctl_int("/proc/sys/kernel/io_uring_group", &gid);
		snprintf(why, whylen,
			 "io_uring is restricted by sysctl kernel.io_uring_disabled=1 to group %d "
			 "(kernel.io_uring_group); run kage with that group or set the sysctl to 0",
			 gid);
	} else if (err == EPERM) {
		snprintf(why, whylen,
			 "io_uring_setup was refused (EPERM) although kernel.io_uring_disabled=0: a "
			 "seccomp filter or security module blocks it; allow io_uring for kage");
	} else if (err == ENOMEM) {
		snprintf(why, whylen,
			 "could not allocate the io_uring ring (ENOMEM): lower --ring-entries or raise "
			 "the locked-memory limit (ulimit -l)");
	} else if (err == EINVAL) {
		snprintf(why, whylen,
			 "the kernel rejected every io_uring setup kage knows (EINVAL): "
			 "kage needs Linux 6.1 or newer");
	} else {
		snprintf(why, whylen, "io_uring_setup failed: %s", strerror(err));
	}
}

/*
 * Try the best ring first and step down: SINGLE_ISSUER|DEFER_TASKRUN (6.1)
 * runs completion work only when this thread asks for events, which suits
 * an event loop; COOP_TASKRUN (5.19) at least avoids IPIs; plain last.
 */
static int setup_ring(struct uring *u, const struct uring_params *p)
{
	static const unsigned ladder[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
		0,
	};
	int ret = -EINVAL;

	for (size_t i = 0; i < sizeof ladder / sizeof ladder[0]; i++) {
		struct io_uring_params params;
		memset(&params, 0, sizeof params);
		params.flags = ladder[i] | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE |
			       IORING_SETUP_CLAMP;
		params.cq_entries = p->cq_entries;
		ret = io_uring_queue_init_params(p->sq_entries, &u->ring, &params);
		if (ret == 0) {
			u->info.single_issuer = i == 0;
			u->info.coop_taskrun = i == 1;
			/* IORING_FEAT_RECVSEND_BUNDLE, unknown to 2.3. */
			u->info.recv_bundle = params.features & (1U << 14);
			return 0;
		}
		if (ret != -EINVAL)
			return ret;
	}
	return ret;
}

static void probe_ops(struct uring *u)
{
	struct io_uring_probe *probe = io_uring_get_probe_ring(&u->ring);
	if (!probe)
		return;
	u->info.send_zc = io_uring_opcode_supported(probe, IORING_OP_SENDMSG_ZC);
	io_uring_free_probe(probe);
}

int uring_open(struct uring **out, const struct uring_params *p, char *why, size_t whylen)
{
	struct uring *u = calloc(1, sizeof *u);
	if (!u) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	int ret = setup_ring(u, p);
	if (ret < 0) {
		explain_setup_error(-ret, why, whylen);
		free(u);
		return ret;
	}
	/* A registered ring fd saves an fget/fput on every io_uring_enter. */
	io_uring_register_ring_fd(&u->ring);
	probe_ops(u);
	*out = u;
	return 0;
}

static void bufgroup_free(struct uring *u, unsigned bgid)
{
	struct bufgroup *g = &u->groups[bgid];
	if (!g->active)
		return;
	io_uring_unregister_buf_ring(&u->ring, (int)bgid);
	munmap(g->br, (size_t)g->count * sizeof(struct io_uring_buf));
	munmap(g->mem, (size_t)g->count * g->size);
	g->active = false;
}

void uring_close(struct uring *u)
{
	if (!u)
		return;
	for (unsigned i = 0; i < MAX_GROUPS; i++)
		bufgroup_free(u, i);
	io_uring_queue_exit(&u->ring);
	free(u);
}

const struct uring_info *uring_info(const struct uring *u)
{
	return &u->info;
}

const struct uring_stats *uring_stats(const struct uring *u)
{
	return &u->stats;
}

/* --- provided buffers ------------------------------------------------------ */

/*
 * liburing 2.3 has no io_uring_setup_buf_ring(): map the ring ourselves,
 * page aligned as the kernel requires, and register it.
 */
int uring_bufgroup_add(struct uring *u, unsigned bgid, unsigned count, unsigned size)
{
	if (bgid >= MAX_GROUPS || u->groups[bgid].active || count == 0 || (count & (count - 1)))
		return -EINVAL;
	struct bufgroup *g = &u->groups[bgid];
	size_t ring_bytes = (size_t)count * sizeof(struct io_uring_buf);
	void *br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (br == MAP_FAILED)
		return -errno;
	void *mem = mmap(NULL, (size_t)count * size, PROT_READ | PROT_WRITE,
			 MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (mem == MAP_FAILED) {
		int e = errno;
		munmap(br, ring_bytes);
		return -e;
	}
	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof reg);
	reg.ring_addr = (unsigned long)br;
	reg.ring_entries = count;
	reg.bgid = (unsigned short)bgid;
	int ret = io_uring_register_buf_ring(&u->ring, &reg, 0);
	if (ret < 0) {
		munmap(br, ring_bytes);
		munmap(mem, (size_t)count * size);
		return ret;
	}
	g->br = br;
	g->mem = mem;
	g->count = count;
	g->size = size;
	g->mask = io_uring_buf_ring_mask(count);
	g->active = true;
	io_uring_buf_ring_init(g->br);
	for (unsigned i = 0; i < count; i++)
		io_uring_buf_ring_add(g->br, g->mem + (size_t)i * size, size, (unsigned short)i,
				      g->mask, (int)i);
	io_uring_buf_ring_advance(g->br, (int)count);
	return 0;
}

void *uring_buf_addr(const struct uring *u, unsigned bgid, unsigned bid)
{
	const struct bufgroup *g = &u->groups[bgid];
	return g->mem + (size_t)bid * g->size;
}

unsigned uring_buf_size(const struct uring *u, unsigned bgid)
{
	return u->groups[bgid].size;
}

void uring_buf_recycle(struct uring *u, unsigned bgid, unsigned bid)
{
	struct bufgroup *g = &u->groups[bgid];
	io_uring_buf_ring_add(g->br, g->mem + (size_t)bid * g->size, g->size, (unsigned short)bid,
			      g->mask, (int)g->pending);
	g->pending++;
}

/* One store-release per group per loop iteration publishes the batch. */
static void publish_buffers(struct uring *u)
{
	for (unsigned i = 0; i < MAX_GROUPS; i++) {
		struct bufgroup *g = &u->groups[i];
		if (g->pending) {
			io_uring_buf_ring_advance(g->br, (int)g->pending);
			g->pending = 0;
		}
	}
}

/* --- submissions ----------------------------------------------------------- */

static struct io_uring_sqe *get_sqe(struct uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	while (unlikely(!sqe)) {
		/* SQ full: hand the batch to the kernel and take a fresh slot. */
		int n = io_uring_submit(&u->ring);
		if (n > 0)
			u->stats.sqes += (uint64_t)n;
		u->stats.enters++;
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

void uring_accept_multishot(struct uring *u, int lfd, uint64_t data)
{
	struct io_uring_sqe *sqe = get_sqe(u);
	io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, data);
}

void uring_recv_multishot(struct uring *u, int fd, unsigned bgid, uint64_t data)
{
	struct io_uring_sqe *sqe = get_sqe(u);
	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = (unsigned short)bgid;
	io_uring_sqe_set_data64(sqe, data);
}

/*
 * MSG_WAITALL makes io_uring retry a short stream send itself, so a send
 * completes with everything written or with an error; MSG_NOSIGNAL turns
 * a vanished peer into EPIPE instead of a signal.
 */
void uring_send(struct uring *u, int fd, const void *buf, size_t len, uint64_t data)
{
	struct io_uring_sqe *sqe = get_sqe(u);
	io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data64(sqe, data);
}

void uring_sendmsg(struct uring *u, int fd, const struct msghdr *msg, uint64_t data)
{
	struct io_uring_sqe *sqe = get_sqe(u);
	io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data64(sqe, data);
}

/* IORING_SEND_ZC_REPORT_USAGE and IORING_NOTIF_USAGE_ZC_COPIED, unknown to 2.3. */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif

/*
 * The notification's res then says whether the kernel had to copy after
 * all (it always does on loopback: MSG_ZEROCOPY to a local socket copies).
 */
void uring_sendmsg_zc(struct uring *u, int fd, const struct msghdr *msg, uint64_t data)
{
	struct io_uring_sqe *sqe = get_sqe(u);
	io_uring_prep_sendmsg_zc(sqe, fd, msg, MSG_NOSIGNAL | MSG_WAITALL);
	sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
	io_uring_sqe_set_data64(sqe, data);
}

void uring_connect(struct uring *u, int fd, const struct sockaddr *sa, socklen_t len,
		   uint64_t data)
{
	struct io_uring_sqe *sqe = get_sqe(u);
	io_uring_prep_connect(sqe, fd, sa, len);
	io_uring_sqe_set_data64(sqe, data);
}

void uring_read(struct uring *u, int fd, void *buf, unsigned len, uint64_t data)
{
	struct io_uring_sqe *sqe = get_sqe(u);
	io_uring_prep_read(sqe, fd, buf, len, 0);
	io_uring_sqe_set_data64(sqe, data);
}

/* Offset -1: append at the file position (O_APPEND files, pipes). */
void uring_write(struct uring *u, int fd, const void *buf, unsigned len, uint64_t data)
{
	struct io_uring_sqe *sqe = get_sqe(u);
	io_uring_prep_write(sqe, fd, buf, len, (__u64)-1);
	io_uring_sqe_set_data64(sqe, data);
}

/* Housekeeping requests post nothing on success (data 0 if they fail). */
static void quiet(struct io_uring_sqe *sqe)
{
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, 0);
}

void uring_cancel(struct uring *u, uint64_t target)
{
	struct io_uring_sqe *sqe = get_sqe(u);
	io_uring_prep_cancel64(sqe, target, IORING_ASYNC_CANCEL_ALL);
	quiet(sqe);
}

void uring_cancel_fd(struct uring *u, int fd)
{
	struct io_uring_sqe *sqe = get_sqe(u);
	io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
	quiet(sqe);
}

void uring_shutdown_wr(struct uring *u, int fd)
{
	struct io_uring_sqe *sqe = get_sqe(u);
	io_uring_prep_shutdown(sqe, fd, SHUT_WR);
	quiet(sqe);
}

void uring_close_fd(struct uring *u, int fd)
{
	struct io_uring_sqe *sqe = get_sqe(u);
	io_uring_prep_close(sqe, fd);
	quiet(sqe);
}

/* --- completions ----------------------------------------------------------- */

static uint32_t event_flags(const struct io_uring_cqe *cqe)
{
	uint32_t f = 0;
	if (cqe->flags & IORING_CQE_F_MORE)
		f |= UEV_MORE;
	if (cqe->flags & IORING_CQE_F_NOTIF)
		f |= UEV_NOTIF;
	if (cqe->flags & IORING_CQE_F_BUFFER)
		f |= UEV_BUFFER | (cqe->flags & ~((1u << IORING_CQE_BUFFER_SHIFT) - 1));
	return f;
}

/*
 * koverflow counts only completions the kernel dropped; normally it keeps
 * them on a list and raises IORING_SQ_CQ_OVERFLOW until they fit. Both mean
 * the ring is too small for the load: count the times either is seen.
 */
static void note_overflow(struct uring *u)
{
	if (IO_URING_READ_ONCE(*u->ring.sq.kflags) & IORING_SQ_CQ_OVERFLOW)
		u->stats.cq_overflows++;
	unsigned ov = *u->ring.cq.koverflow;
	if (ov != u->last_overflow) {
		u->stats.cq_overflows += ov - u->last_overflow;
		u->last_overflow = ov;
	}
}

unsigned uring_wait(struct uring *u, struct uring_event *ev, unsigned max, int64_t timeout_ns)
{
	struct io_uring_cqe *cqe;
	int ret;

	publish_buffers(u);
	if (io_uring_cq_ready(&u->ring)) {
		/* Completions already waiting: just hand over the new work. */
		ret = io_uring_submit(&u->ring);
	} else if (timeout_ns < 0) {
		ret = io_uring_submit_and_wait(&u->ring, 1);
	} else if (timeout_ns == 0) {
		ret = io_uring_submit_and_get_events(&u->ring);
	} else {
		struct __kernel_timespec ts = {
			.tv_sec = timeout_ns / 1000000000LL,
			.tv_nsec = timeout_ns % 1000000000LL,
		};
		ret = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
	}
	u->stats.enters++;
	if (ret > 0)
		u->stats.sqes += (uint64_t)ret;

	unsigned n = 0;
	unsigned head;
	io_uring_for_each_cqe(&u->ring, head, cqe) {
		if (n == max)
			break;
		ev[n].data = cqe->user_data;
		ev[n].res = cqe->res;
		ev[n].flags = event_flags(cqe);
		if (cqe->res == -ENOBUFS)
			u->stats.enobufs++;
		n++;
	}
	io_uring_cq_advance(&u->ring, n);
	note_overflow(u);
	return n;
}

void uring_flush(struct uring *u)
{
	publish_buffers(u);
	int n = io_uring_submit(&u->ring);
	u->stats.enters++;
	if (n > 0)
		u->stats.sqes += (uint64_t)n;
}

/* --- startup check ---------------------------------------------------------- */

/*
 * Exercise what every shard will rely on, once, before any thread starts:
 * a ring, a provided-buffer ring and a multishot receive into it. The last
 * needs Linux 6.0; a kernel without it fails here with a clear message
 * instead of inside a shard.
 */
int uring_check(char *why, size_t whylen)
{
	struct uring_params p = { .sq_entries = 8, .cq_entries = 16 };
	struct uring *u;
	int ret = uring_open(&u, &p, why, whylen);
	if (ret < 0)
		return ret;

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		ret = -errno;
		snprintf(why, whylen, "socketpair: %s", strerror(errno));
		uring_close(u);
		return ret;
	}
	ret = uring_bufgroup_add(u, 0, 2, 64);
	if (ret < 0) {
		snprintf(why, whylen,
			 "could not register a provided-buffer ring (%s): kage needs Linux 6.1 or newer",
			 strerror(-ret));
		goto out;
	}
	uring_recv_multishot(u, sv[0], 0, 1);
	if (write(sv[1], "k", 1) != 1) {
		ret = -errno;
		snprintf(why, whylen, "socketpair write: %s", strerror(errno));
		goto out;
	}
	struct uring_event ev;
	int64_t deadline = 1000000000LL;
	unsigned n = uring_wait(u, &ev, 1, deadline);
	if (n != 1 || ev.res != 1 || !(ev.flags & UEV_BUFFER)) {
		ret = -ENOTSUP;
		snprintf(why, whylen,
			 "multishot receive into provided buffers does not work here (res %d): "
			 "kage needs Linux 6.1 or newer",
			 n == 1 ? ev.res : 0);
		goto out;
	}
	ret = 0;
out:
	close(sv[0]);
	close(sv[1]);
	uring_close(u);
	return ret;
}
