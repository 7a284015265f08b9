#ifndef KAGE_URING_H
#define KAGE_URING_H
/*
 * uring: kage's only door to io_uring. Nothing else includes liburing.h.
 *
 * One struct uring per shard, created and used by that shard's thread only
 * (SINGLE_ISSUER | DEFER_TASKRUN where the kernel has them). It wraps:
 * - ring setup with a fallback ladder, and a one-line explanation of why
 *   io_uring is unavailable when it is (sysctl, seccomp, old kernel);
 * - the submissions the proxy needs, each a short function (SQEs that
 *   liburing 2.3 has no helper for are filled by hand here, see
 *   research/io_uring-brief.md section 3);
 * - provided-buffer rings: registered, filled, recycled in batches;
 * - completion harvesting: uring_wait() submits everything queued, waits
 *   for at least one completion or the timeout, and copies completions out
 *   as plain struct uring_event, so callers never see liburing types.
 *
 * Every submission carries a 64-bit `data` chosen by the caller and handed
 * back in the matching event. Submissions never fail: when the SQ is full
 * the queued entries are flushed to the kernel first.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

struct uring;

struct uring_event {
	uint64_t data;
	int32_t res;
	uint32_t flags;		/* UEV_* */
};

#define UEV_MORE	(1u << 0)	/* the multishot request stays armed */
#define UEV_BUFFER	(1u << 1)	/* a provided buffer was consumed: see uev_bid() */
#define UEV_NOTIF	(1u << 2)	/* a SEND_ZC notification */
#define URING_ZC_COPIED	(1u << 31)	/* in a notification's res: the kernel copied */
#define UEV_BID_SHIFT	16

static inline unsigned uev_bid(const struct uring_event *ev)
{
	return ev->flags >> UEV_BID_SHIFT;
}

struct uring_params {
	unsigned sq_entries;	/* power of two */
	unsigned cq_entries;	/* power of two, >= sq_entries */
};

/* Capabilities found at setup, for logs and metrics. */
struct uring_info {
	bool single_issuer;	/* SINGLE_ISSUER | DEFER_TASKRUN accepted */
	bool coop_taskrun;	/* the fallback */
	bool recv_bundle;	/* IORING_FEAT_RECVSEND_BUNDLE (kernel 6.10) */
	bool send_zc;		/* IORING_OP_SEND_ZC supported */
};

/* Counters the ring keeps; read by the owning thread (copied to metrics). */
struct uring_stats {
	uint64_t enters;	/* io_uring_enter calls made by uring_wait */
	uint64_t sqes;		/* entries submitted */
	uint64_t cq_overflows;	/* waits that found the CQ overflowed, + drops */
	uint64_t enobufs;	/* recvs that found their buffer ring empty */
};

/*
 * Create a ring for the calling thread. On failure returns -errno and
 * writes one line to `why`: the cause and the remedy (for example
 * "io_uring is disabled by sysctl kernel.io_uring_disabled=2; set it to 0").
 */
int uring_open(struct uring **out, const struct uring_params *p, char *why, size_t whylen);
void uring_close(struct uring *u);
const struct uring_info *uring_info(const struct uring *u);
const struct uring_stats *uring_stats(const struct uring *u);

/* Probe once, without keeping a ring: 0, or -errno with `why` filled as above. */
int uring_check(char *why, size_t whylen);

/* --- provided buffers ----------------------------------------------------
 * A group is `count` (power of two) buffers of `size` bytes carved from one
 * allocation. The kernel picks a buffer for each receive into the group;
 * the owner gives it back with uring_buf_recycle() when done with the
 * bytes. Recycled buffers are published to the kernel in one batch at the
 * next uring_wait(). */
int uring_bufgroup_add(struct uring *u, unsigned bgid, unsigned count, unsigned size);
void *uring_buf_addr(const struct uring *u, unsigned bgid, unsigned bid);
unsigned uring_buf_size(const struct uring *u, unsigned bgid);
void uring_buf_recycle(struct uring *u, unsigned bgid, unsigned bid);

/* --- submissions ---------------------------------------------------------- */
void uring_accept_multishot(struct uring *u, int lfd, uint64_t data);
void uring_recv_multishot(struct uring *u, int fd, unsigned bgid, uint64_t data);
void uring_send(struct uring *u, int fd, const void *buf, size_t len, uint64_t data);
void uring_sendmsg(struct uring *u, int fd, const struct msghdr *msg, uint64_t data);
/* Zero-copy send; completes with an event and later a UEV_NOTIF event. */
void uring_sendmsg_zc(struct uring *u, int fd, const struct msghdr *msg, uint64_t data);
void uring_connect(struct uring *u, int fd, const struct sockaddr *sa, socklen_t len,
		   uint64_t data);
void uring_read(struct uring *u, int fd, void *buf, unsigned len, uint64_t data);
void uring_write(struct uring *u, int fd, const void *buf, unsigned len, uint64_t data);
/* Cancel every request whose data equals `target`; no event of its own. */
void uring_cancel(struct uring *u, uint64_t target);
/* Cancel every request on fd; no event of its own. */
void uring_cancel_fd(struct uring *u, int fd);
/* shutdown(2) of the write side; no event of its own on success. */
void uring_shutdown_wr(struct uring *u, int fd);
/* close(2) through the ring; no event of its own. */
void uring_close_fd(struct uring *u, int fd);

/*
 * Submit what is queued, wait until at least one completion is there or
 * `timeout_ns` passes (< 0: no timeout; 0: do not wait), then copy up to
 * `max` completions into `ev`. Returns how many.
 */
unsigned uring_wait(struct uring *u, struct uring_event *ev, unsigned max, int64_t timeout_ns);

/* Submit what is queued without waiting. */
void uring_flush(struct uring *u);

#endif
