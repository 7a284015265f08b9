#ifndef KAGE_SERVER_H
#define KAGE_SERVER_H
/*
 * server: the process around the shards. It binds every shard's listener
 * before any thread starts (so a port in use is a clean exit 2), opens the
 * logs, starts the comparator and the shards, then waits for signals:
 * SIGTERM/SIGINT drain (a second one cuts the drain short), SIGHUP reopens
 * the log files. On the way out it joins everything, flushes the diff log
 * and prints the summary.
 */
#include <stdbool.h>

struct kage_config;
struct shard;
struct comparator;
struct plugin;
struct server;

struct kage_hooks;

/* Run until drained, with `hooks` (or none). Returns the exit status. */
int server_run(const struct kage_config *cfg, const struct kage_hooks *hooks);

/* For the shards. */
const struct kage_config *server_config(struct server *srv);
int server_access_fd(struct server *srv);
struct comparator *server_comparator(struct server *srv);
const struct plugin *server_plugin(struct server *srv);
bool server_draining(struct server *srv);
bool server_force_stop(struct server *srv);
void server_shard_ready(struct server *srv, struct shard *sh, bool ok);

#endif
