#ifndef KAGE_CLIENT_H
#define KAGE_CLIENT_H
/*
 * client: the client connection state machine and its exchange with the
 * master backend (SPEC section 3).
 *
 *            head starts        head complete          request complete
 *   IDLE ------------> HEAD ----------------> BODY --------------------> WAIT
 *    ^                                          (no body: straight to WAIT) |
 *    |                       response complete, keep-alive                  |
 *    +----------------------------------------------------------------------+
 *
 *   WAIT --101--> TUNNEL;  any --error answer / Connection: close-->
 *   LINGER (write side shut, input drained) --> CLOSED
 *
 * One exchange at a time: pipelined requests wait in the connection's input
 * queue (their buffers held, the receive paused past a few) until the
 * response before them is complete, which answers them in order. Request
 * bodies stream to master as they arrive; master's response streams back
 * from the buffers it arrived in. Backpressure both ways: a side whose
 * output is too far behind stops the other side's receive.
 */
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "shard.h"
#include "timer.h"

struct uring_event;
struct upstream;
struct record;

enum client_state {
	C_IDLE = 1,		/* between requests */
	C_HEAD,			/* receiving a request head */
	C_BODY,			/* streaming a request body to master */
	C_WAIT,			/* request complete; response not yet */
	C_TUNNEL,		/* after a 101: raw bytes both ways */
	C_LINGER,		/* answered and shut for writing; draining input */
	C_CLOSED,
};

/* The request being served and its master leg. */
struct exchange {
	struct http_msg req;		/* the request head, moved out of the parser */
	struct upstream *up;		/* master leg (NULL when none or failed) */
	struct record *rec;		/* shadow record, when shadowed */
	int64_t start;			/* head complete (monotonic ns) */
	uint64_t resp_bytes;		/* body bytes sent to the client */
	uint16_t status;		/* final status the client got */
	uint8_t berr;			/* enum backend_error of the master leg */
	bool active;
	bool req_done;			/* request received whole */
	bool resp_started;		/* a final response head went to the client */
	bool resp_done;
	bool chunk_out;			/* kage chunks the body for this client */
	bool close_after;		/* close the client after this response */
	bool retried;
	bool upgrade;			/* the request asks for a protocol switch */
};

#define CLIENT_INQ 8

struct inbuf {
	uint32_t bref;
	uint32_t off;
	uint32_t len;
};

struct client {
	struct conn c;			/* first: the shard's loop sees a conn */
	uint8_t state;			/* enum client_state */
	bool http10;			/* the current request is HTTP/1.0 */
	bool peer_closed;		/* the client shut its write side */
	bool drain;			/* close after the current exchange */
	bool close_flushed;		/* close once the output has drained */
	bool in_process;		/* process_input is on the stack */
	bool master_paused;		/* master's receive stopped: our output is behind */
	uint8_t in_first, in_count;	/* the input queue */
	struct inbuf in[CLIENT_INQ];
	uint32_t cur_bref;		/* the buffer being parsed */
	struct timer timer;
	struct http_parser parser;
	struct exchange ex;
	struct client *next, *prev;	/* the shard's list */
	uint64_t requests;
	uint8_t peer_len;
	char peer[INET6_ADDRSTRLEN];	/* client address, for X-Forwarded-For */
};

/* A new connection accepted on fd (the shard checked max-conns). */
void client_accept(struct shard *sh, int fd);
void client_on_recv(struct shard *sh, struct client *cl, const struct uring_event *ev);
void client_on_send(struct shard *sh, struct client *cl, const struct uring_event *ev);
/* SIGTERM: close now if idle, else after the current response. */
void client_drain(struct shard *sh, struct client *cl);
/* Past the drain deadline: close now, whatever it was doing. */
void client_force_close(struct shard *sh, struct client *cl);
/* Every operation completed after close: give the memory back. */
void client_free(struct shard *sh, struct client *cl);

#endif
