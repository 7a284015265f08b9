#ifndef KAGE_H
#define KAGE_H
/*
 * kage.h: the public interface of libkage, the HTTP shadow proxy.
 *
 * The kage binary is a thin main over this library: a C program can link
 * libkage.a and run the same server.
 */
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Parse the command line (see `kage --help`), run the proxy until it is
 * drained by SIGTERM/SIGINT, and return the process exit status: 0 after
 * a clean drain, --help, --version or --check; 1 when it cannot run (for
 * example io_uring unavailable); 2 for a bad command line or configuration.
 */
int kage_main(int argc, char *argv[]);

#ifdef __cplusplus
}
#endif
#endif
