/* Internal declarations shared by the core's files (fm__ prefix). Nothing
 * here is for the drivers; they use include/fedmesh/fedmesh.h only. */
#ifndef FM_CORE_H
#define FM_CORE_H

#include <stdarg.h>

#include "fedmesh/fedmesh.h"

/* Longest log line the core formats; longer lines are truncated. */
#define FM__LOG_LINE_MAX 512

struct fm_node {
	fm_io io;
	fm_identity identity;
	uint64_t started_ms;
	uint64_t last_now_ms;
	uint32_t peers_connected;
	fm_node_stats stats;
};

void fm__log(const fm_node *node, enum fm_log_level level,
             const char *subsystem, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

#endif
