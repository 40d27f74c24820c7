/* 4-ary heap for the event queue (eventq.h). Four children per node halve
 * the depth of a binary heap and keep a node's children in one or two cache
 * lines; sifting moves a hole instead of swapping, so each level costs one
 * 32-byte copy. */
#include <errno.h>
#include <stdlib.h>

#include "eventq.h"

#define ARITY 4
#define DEFAULT_CAP 1024

static inline int before(const struct fms_event *x, const struct fms_event *y)
{
	return x->time_us < y->time_us ||
	       (x->time_us == y->time_us && x->seq < y->seq);
}

int fms_eventq_init(struct fms_eventq *q, size_t cap_hint)
{
	q->len = 0;
	q->next_seq = 0;
	q->pushed = 0;
	q->cap = cap_hint > 0 ? cap_hint : DEFAULT_CAP;
	if (q->cap > FMS_EVENTQ_MAX_EVENTS)
		q->cap = FMS_EVENTQ_MAX_EVENTS;
	q->heap = malloc(q->cap * sizeof(*q->heap));
	if (q->heap == NULL) {
		q->cap = 0;
		return -ENOMEM;
	}
	return 0;
}

void fms_eventq_free(struct fms_eventq *q)
{
	if (q == NULL)
		return;
	free(q->heap);
	q->heap = NULL;
	q->len = q->cap = 0;
}

int fms_eventq_push(struct fms_eventq *q, uint64_t time_us, uint32_t type,
                    uint32_t a, uint32_t b, uint32_t c)
{
	struct fms_event ev;
	size_t i;

	if (q->len == q->cap) {
		size_t cap = q->cap == 0 ? DEFAULT_CAP : q->cap * 2;
		struct fms_event *grown;
		if (q->len >= FMS_EVENTQ_MAX_EVENTS)
			return -ENOSPC;
		if (cap > FMS_EVENTQ_MAX_EVENTS)
			cap = FMS_EVENTQ_MAX_EVENTS;
		grown = realloc(q->heap, cap * sizeof(*grown));
		if (grown == NULL)
			return -ENOMEM;
		q->heap = grown;
		q->cap = cap;
	}
	ev.time_us = time_us;
	ev.seq = q->next_seq++;
	ev.type = type;
	ev.a = a;
	ev.b = b;
	ev.c = c;
	q->pushed++;
	/* Sift the hole up from the end. */
	i = q->len++;
	while (i > 0) {
		size_t parent = (i - 1) / ARITY;
		if (!before(&ev, &q->heap[parent]))
			break;
		q->heap[i] = q->heap[parent];
		i = parent;
	}
	q->heap[i] = ev;
	return 0;
}

const struct fms_event *fms_eventq_peek(const struct fms_eventq *q)
{
	return q->len > 0 ? &q->heap[0] : NULL;
}

int fms_eventq_pop(struct fms_eventq *q, struct fms_event *out)
{
	struct fms_event last;
	size_t i, n;

	if (q->len == 0)
		return 0;
	*out = q->heap[0];
	n = --q->len;
	if (n == 0)
		return 1;
	last = q->heap[n];
	/* Sift the hole at the root down to where `last` belongs. */
	i = 0;
	for (;;) {
		size_t first = i * ARITY + 1, best, c, end;
		if (first >= n)
			break;
		best = first;
		end = first + ARITY < n ? first + ARITY : n;
		for (c = first + 1; c < end; c++)
			if (before(&q->heap[c], &q->heap[best]))
				best = c;
		if (!before(&q->heap[best], &last))
			break;
		q->heap[i] = q->heap[best];
		i = best;
	}
	q->heap[i] = last;
	return 1;
}
