/* fedmeshd logging: human-readable lines on stderr by default, or one JSON
 * object per line (--log-format json) for journald and log shippers. Kept
 * apart from everything else so the core's fm_io.log and the daemon's own
 * messages end up in one format. */
#ifndef FMD_LOG_H
#define FMD_LOG_H

#include <stdarg.h>
#include <stdio.h>

#include "fedmesh/fedmesh.h"

enum fmd_log_format { FMD_LOG_TEXT = 0, FMD_LOG_JSON = 1 };

/* Sets the sink (stderr when NULL), format and the most verbose level shown. */
void fmd_log_init(FILE *sink, enum fmd_log_format format,
                  enum fm_log_level max_level);
/* Parses "error", "warn", "info", "debug". Returns 0 or -EINVAL. */
int fmd_log_level_parse(const char *text, enum fm_log_level *out);
const char *fmd_log_level_name(enum fm_log_level level);
/* Parses "text" or "json". Returns 0 or -EINVAL. */
int fmd_log_format_parse(const char *text, enum fmd_log_format *out);
const char *fmd_log_format_name(enum fmd_log_format format);

/* Logs one line. peer and job are optional IDs (NULL when not relevant); in
 * JSON they become "peer" and "job" fields. */
void fmd_log_ids(enum fm_log_level level, const char *subsystem,
                 const char *peer, const char *job, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
#define fmd_log(level, subsystem, ...) \
	fmd_log_ids((level), (subsystem), NULL, NULL, __VA_ARGS__)

#endif
