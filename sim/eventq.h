/* The simulator's event queue: a 4-ary min-heap of small fixed-size events
 * ordered by (time, sequence number). The sequence number is assigned at
 * push, so events due at the same microsecond run in the order they were
 * scheduled and a run replays exactly. Events live inline in one array that
 * grows by doubling: no allocation per event, and tens of millions of
 * events cost only the heap operations. */
#ifndef FMS_EVENTQ_H
#define FMS_EVENTQ_H

#include <stddef.h>
#include <stdint.h>

/* Most events the queue holds at once (2^28 events, 8 GiB). */
#define FMS_EVENTQ_MAX_EVENTS (1u << 28)

/* An event is a type and three 32-bit arguments; their meaning belongs to
 * whoever pushed it (the network model or the simulator). 32 bytes. */
struct fms_event {
	uint64_t time_us;
	uint64_t seq;
	uint32_t type;
	uint32_t a, b, c;
};

struct fms_eventq {
	struct fms_event *heap;
	size_t len, cap;
	uint64_t next_seq;
	uint64_t pushed; /* events ever pushed */
};

/* cap_hint: initial capacity (0 for a default). Returns 0 or -ENOMEM. */
int fms_eventq_init(struct fms_eventq *q, size_t cap_hint);
void fms_eventq_free(struct fms_eventq *q);
/* Returns 0, -ENOMEM, or -ENOSPC beyond FMS_EVENTQ_MAX_EVENTS. */
int fms_eventq_push(struct fms_eventq *q, uint64_t time_us, uint32_t type,
                    uint32_t a, uint32_t b, uint32_t c);
/* Removes the earliest event into *out. Returns 1, or 0 when empty. */
int fms_eventq_pop(struct fms_eventq *q, struct fms_event *out);
/* The earliest event, or NULL when empty. */
const struct fms_event *fms_eventq_peek(const struct fms_eventq *q);

static inline size_t fms_eventq_len(const struct fms_eventq *q)
{
	return q->len;
}

#endif
