/* struct fm_node: the state of one fedmesh node and the entry points the
 * drivers call with explicit time. At this stage the node owns its identity
 * and its counters; sessions, the DHT, discovery and jobs hang off it as
 * they land. Nothing is accepted from the network until it is sealed for
 * our federation, so every datagram is dropped and counted, and inbound
 * streams are closed without a byte written: non-members get silence. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define FM__VERSION "0.1.0"

const char *fm_version(void)
{
	return FM__VERSION;
}

void fm__log(const fm_node *node, enum fm_log_level level,
             const char *subsystem, const char *fmt, ...)
{
	char line[FM__LOG_LINE_MAX];
	va_list ap;

	if (node->io.log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	node->io.log(node->io.ctx, level, subsystem, line);
}

int fm_node_new(const fm_node_config *cfg, const fm_io *io, uint64_t now_ms,
                fm_node **out)
{
	fm_node *node;

	if (cfg == NULL || io == NULL || out == NULL)
		return -EINVAL;
	if (io->send_datagram == NULL || io->random_bytes == NULL)
		return -EINVAL;
	node = calloc(1, sizeof(*node));
	if (node == NULL)
		return -ENOMEM;
	node->io = *io;
	node->identity = cfg->identity;
	if (fm_identity_check(&node->identity) != 0) {
		fm_node_free(node);
		return -EINVAL;
	}
	node->started_ms = now_ms;
	node->last_now_ms = now_ms;
	*out = node;
	return 0;
}

void fm_node_free(fm_node *node)
{
	if (node == NULL)
		return;
	fm_identity_wipe(&node->identity);
	free(node);
}

/* Drivers must hand in a monotonic clock; a clock that steps backwards is
 * clamped so timers never fire twice or go negative. */
static void advance_clock(fm_node *node, uint64_t now_ms)
{
	if (now_ms > node->last_now_ms)
		node->last_now_ms = now_ms;
}

void fm_node_recv_datagram(fm_node *node, uint64_t now_ms, const fm_addr *from,
                           const uint8_t *buf, size_t len)
{
	(void)from;
	(void)buf;
	advance_clock(node, now_ms);
	node->stats.datagrams_received++;
	if (len > FM_DATAGRAM_MAX_BYTES) {
		node->stats.datagrams_dropped[FM_DROP_OVERSIZE]++;
		return;
	}
	/* No datagram can carry a valid federation seal before the session
	 * layer exists; drop without answering so outsiders learn nothing. */
	node->stats.datagrams_dropped[FM_DROP_UNAUTHENTICATED]++;
}

void fm_node_stream_opened(fm_node *node, uint64_t now_ms, uint64_t stream_id,
                           const fm_addr *remote, int incoming)
{
	char addr[FM_ADDR_STR_MAX] = "?";

	advance_clock(node, now_ms);
	node->stats.streams_opened++;
	if (remote != NULL)
		(void)fm_addr_format(remote, addr, sizeof(addr));
	if (incoming && node->io.stream_close != NULL) {
		/* Nobody can authenticate yet: close without a byte. */
		fm__log(node, FM_LOG_DEBUG, "node",
		        "closing inbound stream %llu from %s: no session "
		        "protocol can admit it",
		        (unsigned long long)stream_id, addr);
		node->io.stream_close(node->io.ctx, stream_id);
	}
}

void fm_node_stream_data(fm_node *node, uint64_t now_ms, uint64_t stream_id,
                         const uint8_t *buf, size_t len)
{
	(void)stream_id;
	(void)buf;
	advance_clock(node, now_ms);
	node->stats.stream_bytes_received += len;
}

void fm_node_stream_closed(fm_node *node, uint64_t now_ms, uint64_t stream_id,
                           int error)
{
	(void)stream_id;
	(void)error;
	advance_clock(node, now_ms);
	node->stats.streams_closed++;
}

uint64_t fm_node_tick(fm_node *node, uint64_t now_ms)
{
	advance_clock(node, now_ms);
	node->stats.ticks++;
	/* No timers are pending yet: an idle node asks never to be woken. */
	return FM_DEADLINE_NONE;
}

void fm_node_get_status(const fm_node *node, fm_node_status *out)
{
	memset(out, 0, sizeof(*out));
	memcpy(out->node_id, node->identity.node_id, FM_NODE_ID_BYTES);
	out->peers_connected = node->peers_connected;
	out->started_ms = node->started_ms;
}

void fm_node_get_stats(const fm_node *node, fm_node_stats *out)
{
	*out = node->stats;
}

const char *fm_drop_reason_name(enum fm_drop_reason reason)
{
	switch (reason) {
	case FM_DROP_OVERSIZE:
		return "oversize";
	case FM_DROP_UNAUTHENTICATED:
		return "unauthenticated";
	case FM_DROP_REASON_COUNT:
		break;
	}
	return "unknown";
}
