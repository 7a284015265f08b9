/*
 * noring: run a program where io_uring is unavailable.
 *
 *     noring [--eperm|--enosys] PROGRAM [ARG]...
 *
 * Installs a seccomp filter (after PR_SET_NO_NEW_PRIVS, so no privilege is
 * needed) that makes io_uring_setup(2) fail with EPERM or ENOSYS (the
 * default), then execs PROGRAM. Every other system call is allowed. The
 * integration tests use it to check what kage says when it cannot get a ring.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define NORING_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NORING_ARCH AUDIT_ARCH_AARCH64
#else
// cppcheck-suppress preprocessorErrorDirective
#error "noring: unsupported architecture"
#endif

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif

static void usage(FILE *f)
{
	fprintf(f, "usage: noring [--eperm|--enosys] PROGRAM [ARG]...\n"
		   "Run PROGRAM with io_uring_setup(2) failing with EPERM or ENOSYS (default).\n");
}

static int install_filter(int err)
{
	struct sock_filter prog[] = {
		/* A foreign architecture could alias syscall numbers: refuse it outright. */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NORING_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog fprog = {
		.len = (unsigned short)(sizeof prog / sizeof prog[0]),
		.filter = prog,
	};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		fprintf(stderr, "noring: prctl(PR_SET_NO_NEW_PRIVS): %s\n", strerror(errno));
		return -1;
	}
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) < 0) {
		fprintf(stderr, "noring: seccomp(SECCOMP_SET_MODE_FILTER): %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int err = ENOSYS;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--eperm") == 0) {
			err = EPERM;
		} else if (strcmp(argv[i], "--enosys") == 0) {
			err = ENOSYS;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else {
			fprintf(stderr, "noring: unknown option %s\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	if (install_filter(err) < 0)
		return 1;
	execvp(argv[i], &argv[i]);
	fprintf(stderr, "noring: %s: %s\n", argv[i], strerror(errno));
	return 127;
}
